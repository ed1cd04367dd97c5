//! Network interfaces at the services level: the states a created
//! interface goes through (available, in use, available, gone), what
//! refusals leave unchanged, what terminating its instance does, and that
//! it is all there again when the state is loaded anew from the store.

use std::sync::Arc;

use keycard_services::ec2::{RunInput, StateOp};
use keycard_services::eni::{CreateEniInput, EniChange};
use keycard_services::vpc::{DefaultNetwork, NetworkInterface};
use keycard_services::{Config, DEFAULT_ACCOUNT, Keycard, ServiceError};
use keycard_store::{SqliteStore, Store};

const REGION: &str = "us-east-1";

async fn open(store: Arc<dyn Store>, dir: &std::path::Path) -> Arc<Keycard> {
    Keycard::open(Config::new(dir), store).await.unwrap()
}

fn code<T: std::fmt::Debug>(r: Result<T, ServiceError>) -> &'static str {
    r.map_err(|e| e.code()).err().unwrap_or("ok")
}

async fn launch(kc: &Keycard) -> String {
    let input = RunInput {
        image_id: "ami-0abcdef1234567890".into(),
        instance_type: Some("t3.medium".into()),
        min_count: 1,
        max_count: 1,
        ..Default::default()
    };
    let (_, out) = kc
        .run_instances(DEFAULT_ACCOUNT, REGION, input)
        .await
        .unwrap();
    out[0].id.clone()
}

/// A new interface in the default VPC's subnet of zone `n` (0: a).
async fn create(kc: &Keycard, n: usize) -> NetworkInterface {
    let net = DefaultNetwork::new(DEFAULT_ACCOUNT, REGION);
    let input = CreateEniInput {
        subnet_id: net.subnets[n].id.clone(),
        ..Default::default()
    };
    kc.create_network_interface(DEFAULT_ACCOUNT, REGION, &input)
        .await
        .unwrap()
}

/// The primary interface of an instance.
fn primary_of(kc: &Keycard, iid: &str) -> NetworkInterface {
    kc.network_interfaces(DEFAULT_ACCOUNT, REGION)
        .into_iter()
        .find(|x| x.primary && x.attachment.as_ref().is_some_and(|t| t.instance_id == iid))
        .unwrap()
}

fn get(kc: &Keycard, id: &str) -> Result<NetworkInterface, ServiceError> {
    kc.network_interface(DEFAULT_ACCOUNT, REGION, id)
}

#[tokio::test]
async fn a_created_interface_goes_through_its_states_and_survives_a_reload() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.unwrap());
    let dir = std::env::temp_dir().join(format!("keycard-eni-{}", uuid::Uuid::new_v4()));
    let kc = open(store.clone(), &dir).await;
    let (a, r) = (DEFAULT_ACCOUNT, REGION);
    let iid = launch(&kc).await;
    let e = create(&kc, 0).await;
    assert_eq!((e.status(), e.primary), ("available", false));
    assert_eq!(e.groups.len(), 1, "the VPC's default group");
    let far = create(&kc, 1).await;
    // Refusals: another zone, the primary's index, an unknown instance.
    assert_eq!(
        code(kc.attach_network_interface(a, r, &far.id, &iid, 1).await),
        "InvalidParameterCombination"
    );
    assert_eq!(
        code(kc.attach_network_interface(a, r, &e.id, &iid, 0).await),
        "InvalidParameterValue"
    );
    assert_eq!(
        code(
            kc.attach_network_interface(a, r, &e.id, "i-0123456789abcdef0", 1)
                .await
        ),
        "InvalidInstanceID.NotFound"
    );
    assert_eq!(get(&kc, &e.id).unwrap(), e);
    let on = kc
        .attach_network_interface(a, r, &e.id, &iid, 1)
        .await
        .unwrap();
    let att = on.attachment.clone().unwrap();
    assert_eq!((on.status(), att.device_index), ("in-use", 1));
    assert!(!att.delete_on_termination);
    assert_eq!(
        code(kc.delete_network_interface(a, r, &e.id).await),
        "InvalidNetworkInterface.InUse"
    );
    assert_eq!(
        code(kc.attach_network_interface(a, r, &e.id, &iid, 2).await),
        "InvalidNetworkInterface.InUse"
    );
    // The primary interface stays where it is.
    let primary = kc.instance_interfaces(&[&iid]);
    assert_eq!(primary[0].1.len(), 1);
    let p = primary_of(&kc, &iid);
    let pa = p.attachment.clone().unwrap().id;
    assert_eq!(
        code(kc.detach_network_interface(a, r, &pa).await),
        "OperationNotPermitted"
    );
    assert_eq!(
        code(kc.delete_network_interface(a, r, &p.id).await),
        "InvalidNetworkInterface.InUse"
    );
    // A fresh start from the store sees the attachment.
    let again = open(store.clone(), &dir).await;
    assert_eq!(get(&again, &e.id).unwrap(), on);
    again.detach_network_interface(a, r, &att.id).await.unwrap();
    assert_eq!(get(&again, &e.id).unwrap().status(), "available");
    assert_eq!(
        code(again.detach_network_interface(a, r, &att.id).await),
        "InvalidAttachmentID.NotFound"
    );
    again.delete_network_interface(a, r, &e.id).await.unwrap();
    assert_eq!(
        code(get(&again, &e.id)),
        "InvalidNetworkInterfaceID.NotFound"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn termination_deletes_or_frees_interfaces() {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::memory().await.unwrap());
    let dir = std::env::temp_dir().join(format!("keycard-eni-{}", uuid::Uuid::new_v4()));
    let kc = open(store, &dir).await;
    let (a, r) = (DEFAULT_ACCOUNT, REGION);
    let iid = launch(&kc).await;
    let stays = create(&kc, 0).await;
    let goes = create(&kc, 0).await;
    kc.attach_network_interface(a, r, &stays.id, &iid, 1)
        .await
        .unwrap();
    let g = kc
        .attach_network_interface(a, r, &goes.id, &iid, 2)
        .await
        .unwrap();
    let gid = g.attachment.unwrap().id;
    assert_eq!(
        code(
            kc.modify_network_interface(
                a,
                r,
                &goes.id,
                &EniChange::DeleteOnTermination("eni-attach-0123456789abcdef0".into(), true)
            )
            .await
        ),
        "InvalidAttachmentID.NotFound"
    );
    kc.modify_network_interface(a, r, &goes.id, &EniChange::DeleteOnTermination(gid, true))
        .await
        .unwrap();
    let primary = primary_of(&kc, &iid);
    let pa = primary.attachment.clone().unwrap().id;
    kc.modify_network_interface(
        a,
        r,
        &primary.id,
        &EniChange::DeleteOnTermination(pa, false),
    )
    .await
    .unwrap();
    kc.change_state(a, std::slice::from_ref(&iid), StateOp::Terminate)
        .await
        .unwrap();
    let left = get(&kc, &stays.id).unwrap();
    assert_eq!((left.status(), left.attachment), ("available", None));
    assert_eq!(
        code(get(&kc, &goes.id)),
        "InvalidNetworkInterfaceID.NotFound"
    );
    let kept = get(&kc, &primary.id).unwrap();
    assert_eq!((kept.status(), kept.primary), ("available", false));
    assert_eq!(kept.private_ip, primary.private_ip);
    kc.delete_network_interface(a, r, &kept.id).await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
