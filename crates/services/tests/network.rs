//! Created VPCs, subnets and security groups at the services level: an
//! instance takes its address from its subnet and keeps its groups, the
//! delete order AWS enforces, and everything is there again when the
//! state is loaded anew from the store.

use std::sync::Arc;

use keycard_services::ec2::{RunInput, StateOp};
use keycard_services::model::Tag;
use keycard_services::network::{GroupInput, GroupSel, LaunchNetwork, SubnetInput};
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard, ServiceError, vpc};
use keycard_store::{SqliteStore, Store};

const REGION: &str = "us-east-1";

async fn open(store: Arc<dyn Store>, dir: &std::path::Path) -> Arc<Keycard> {
    Keycard::open(Config::new(dir), store).await.unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> &'static str {
    r.map_err(|e| e.code()).err().unwrap_or("ok")
}

fn run_in(subnet: &str, groups: &[&str], ip: Option<&str>) -> RunInput {
    RunInput {
        image_id: "ami-0abcdef1234567890".into(),
        min_count: 1,
        max_count: 1,
        private_ip: ip.map(str::to_string),
        network: LaunchNetwork {
            subnet_id: Some(subnet.into()),
            group_ids: groups.iter().map(|g| g.to_string()).collect(),
            group_names: Vec::new(),
        },
        ..Default::default()
    }
}

#[tokio::test]
async fn instances_live_in_their_subnet_and_everything_survives_a_reload() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.unwrap());
    let dir = std::env::temp_dir().join(format!("keycard-net-{}", uuid::Uuid::new_v4()));
    let kc = open(store.clone(), &dir).await;
    let a = DEFAULT_ACCOUNT;
    let tags = vec![Tag {
        key: "Name".into(),
        value: "app".into(),
    }];
    let v = kc.create_vpc(a, REGION, "10.0.0.0/16", tags).await.unwrap();
    let s = kc
        .create_subnet(
            a,
            REGION,
            SubnetInput {
                vpc_id: v.id.clone(),
                cidr: "10.0.1.0/28".into(),
                zone: Some("us-east-1b".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let g = kc
        .create_security_group(
            a,
            REGION,
            GroupInput {
                name: "web".into(),
                description: "web".into(),
                vpc_id: Some(v.id.clone()),
                tags: Vec::new(),
            },
        )
        .await
        .unwrap();
    assert_eq!(kc.free_addresses_in(&s), 11);

    let (_, first) = kc
        .run_instances(a, REGION, run_in(&s.id, &[&g.id], None))
        .await
        .unwrap();
    let inst = first.first().unwrap();
    assert_eq!(inst.private_ip.as_deref(), Some("10.0.1.4"));
    assert_eq!(inst.availability_zone(), "us-east-1b");
    let eni = vpc::interface_of(inst).unwrap();
    assert_eq!(
        (eni.vpc_id.as_str(), eni.subnet_id.as_str()),
        (v.id.as_str(), s.id.as_str())
    );
    assert_eq!(
        eni.groups
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        ["web"]
    );
    assert_eq!(
        (eni.vpc_cidr.as_str(), eni.subnet_cidr.as_str()),
        ("10.0.0.0/16", "10.0.1.0/28")
    );

    // Requested addresses: inside the subnet, not reserved, not taken.
    for (ip, want) in [
        ("10.0.1.4", "InvalidIPAddress.InUse"),
        ("10.0.1.15", "InvalidParameterValue"),
        ("10.0.2.4", "InvalidParameterValue"),
    ] {
        let r = kc
            .run_instances(a, REGION, run_in(&s.id, &[], Some(ip)))
            .await;
        assert_eq!(code(r), want, "{ip}");
    }
    // A group of another VPC does not go with this subnet.
    let default_group = vpc::DefaultNetwork::new(a, REGION).security_group_id;
    let r = kc
        .run_instances(a, REGION, run_in(&s.id, &[&default_group], None))
        .await;
    assert_eq!(code(r), "InvalidParameter");
    // The subnet fills up: 11 addresses, one taken.
    let mut full = run_in(&s.id, &[], None);
    full.min_count = 11;
    full.max_count = 11;
    assert_eq!(
        code(kc.run_instances(a, REGION, full).await),
        "InsufficientFreeAddressesInSubnet"
    );
    assert_eq!(
        kc.free_addresses_in(&s),
        10,
        "a refused launch took nothing"
    );

    // Dependencies.
    assert_eq!(
        code(kc.delete_vpc(a, REGION, &v.id).await),
        "DependencyViolation"
    );
    assert_eq!(
        code(kc.delete_subnet(a, REGION, &s.id).await),
        "DependencyViolation"
    );
    let by_id = GroupSel::Id(g.id.clone());
    assert_eq!(
        code(kc.delete_security_group(a, REGION, &by_id).await),
        "DependencyViolation"
    );
    let own_default = GroupSel::Id(v.security_group_id.clone());
    assert_eq!(
        code(kc.delete_security_group(a, REGION, &own_default).await),
        "CannotDelete"
    );

    // Loaded anew from the store: the same network and placement.
    let again = open(store.clone(), &dir).await;
    assert_eq!(again.vpcs(a, REGION), kc.vpcs(a, REGION));
    assert_eq!(again.subnets(a, REGION), kc.subnets(a, REGION));
    assert_eq!(
        again.security_groups(a, REGION),
        kc.security_groups(a, REGION)
    );
    let reloaded = again.instance(a, &inst.id).unwrap();
    assert_eq!(vpc::interface_of(&reloaded), Some(eni));

    again
        .change_state(a, std::slice::from_ref(&inst.id), StateOp::Terminate)
        .await
        .unwrap();
    again
        .delete_security_group(a, REGION, &by_id)
        .await
        .unwrap();
    again.delete_subnet(a, REGION, &s.id).await.unwrap();
    again.delete_vpc(a, REGION, &v.id).await.unwrap();
    assert_eq!(again.vpcs(a, REGION).len(), 1, "the default VPC stays");
    assert_eq!(
        again.security_groups(a, REGION).len(),
        1,
        "its default group went with it"
    );
    let last = open(store, &dir).await;
    assert_eq!(last.vpcs(a, REGION).len(), 1);
    assert_eq!(last.subnets(a, REGION).len(), 3);
}

#[tokio::test]
async fn instances_without_a_subnet_keep_the_default_placement() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.unwrap());
    let dir = std::env::temp_dir().join(format!("keycard-net-{}", uuid::Uuid::new_v4()));
    let kc = open(store, &dir).await;
    let a = DEFAULT_ACCOUNT;
    let input = RunInput {
        image_id: "ami-0abcdef1234567890".into(),
        min_count: 2,
        max_count: 2,
        ..Default::default()
    };
    let (_, out) = kc.run_instances(a, REGION, input).await.unwrap();
    let net = vpc::DefaultNetwork::new(a, REGION);
    for i in &out {
        let eni = vpc::interface_of(i).unwrap();
        assert_eq!(eni.vpc_id, net.vpc_id);
        assert_eq!(eni.group_id, net.security_group_id);
        assert!(i.private_ip.as_deref().unwrap_or("").starts_with("172.31."));
    }
    let dup = kc
        .create_security_group(
            a,
            REGION,
            GroupInput {
                name: "default".into(),
                description: "x".into(),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(code(dup), "InvalidGroup.Reserved");
    let by_name = GroupSel::Name("nope".into());
    assert_eq!(
        code(kc.delete_security_group(a, REGION, &by_name).await),
        "InvalidGroup.NotFound"
    );
}
