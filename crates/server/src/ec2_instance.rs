//! Instance calls beyond launch and state: attributes
//! (DescribeInstanceAttribute, ModifyInstanceAttribute), RebootInstances,
//! CPU credit options of burstable instances, and the instance type
//! catalogue (DescribeInstanceTypes). Each instance call is authorized on
//! the instance's ARN, as ec2.rs does.

use keycard_proto::query::Params;
use keycard_proto::xml::XmlWriter;
use keycard_services::ServiceError;
use keycard_services::ec2::{self, Filter, Instance};
use keycard_services::instance_attrs::{AttrChange, cpu_credits};
use keycard_services::instance_types::{self, InstanceType};
use keycard_services::vpc;

use crate::Req;
use crate::ec2::{dry_run_ok, filters, ids, required};
use crate::ec2_network::{flag, respond};

type Out = Result<String, ServiceError>;

const NAMES: &[&str] = &[
    "DescribeInstanceAttribute",
    "ModifyInstanceAttribute",
    "RebootInstances",
    "DescribeInstanceTypes",
    "DescribeInstanceCreditSpecifications",
    "ModifyInstanceCreditSpecification",
];

pub(crate) fn handles(name: &str) -> bool {
    NAMES.contains(&name)
}

pub(crate) async fn handle(req: &mut Req, p: &Params, dry: bool) -> Out {
    match req.op.name {
        "DescribeInstanceAttribute" => describe_attribute(req, p, dry),
        "ModifyInstanceAttribute" => modify_attribute(req, p, dry).await,
        "RebootInstances" => reboot(req, p, dry),
        "DescribeInstanceTypes" => describe_types(req, p, dry),
        "DescribeInstanceCreditSpecifications" => describe_credits(req, p, dry),
        "ModifyInstanceCreditSpecification" => modify_credits(req, p, dry).await,
        other => Err(ServiceError::Internal(format!(
            "operation {other} has a row but no handler"
        ))),
    }
}

/// `<tag><value>v</value></tag>`, or an empty `<tag/>` without a value.
fn value_xml(w: &mut XmlWriter, tag: &str, v: Option<&str>) {
    w.start(tag);
    if let Some(v) = v {
        w.elem("value", v);
    }
    w.end(tag);
}

fn describe_attribute(req: &mut Req, p: &Params, dry: bool) -> Out {
    let account = req.caller.account.clone();
    let iid = required(p, "InstanceId")?;
    let attr = required(p, "Attribute")?.to_string();
    let inst = req.kc.instance(&account, iid)?;
    req.authorize_instance("ec2:DescribeInstanceAttribute", &inst)?;
    if dry {
        return Err(dry_run_ok());
    }
    let volumes = req
        .kc
        .instance_volumes(&[iid])
        .into_iter()
        .flat_map(|(_, v)| v)
        .collect::<Vec<_>>();
    let a = &inst.attrs;
    let scalar: Option<Option<String>> = match attr.as_str() {
        "instanceType" => Some(Some(inst.instance_type.clone())),
        "userData" => Some(inst.user_data.clone()),
        "kernel" | "ramdisk" => Some(None),
        "disableApiTermination" => Some(Some(flag(a.disable_api_termination).into())),
        "disableApiStop" => Some(Some(flag(a.disable_api_stop).into())),
        "instanceInitiatedShutdownBehavior" => Some(Some(a.shutdown_behavior.clone())),
        "rootDeviceName" => Some(Some(keycard_services::volume::ROOT_DEVICE.into())),
        "sourceDestCheck" => Some(Some(flag(a.source_dest_check).into())),
        "ebsOptimized" => Some(Some(flag(a.ebs_optimized).into())),
        "enaSupport" => Some(Some(flag(a.ena_support).into())),
        "sriovNetSupport" => Some(a.sriov_net_support.clone()),
        "blockDeviceMapping" | "productCodes" | "groupSet" | "enclaveOptions" => None,
        other => {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )));
        }
    };
    let groups = vpc::interface_of(&inst)
        .map(|e| e.groups)
        .unwrap_or_default();
    Ok(respond(req, |w| {
        w.elem("instanceId", iid);
        match (attr.as_str(), &scalar) {
            (_, Some(v)) => value_xml(w, &attr, v.as_deref()),
            ("blockDeviceMapping", None) => {
                crate::ec2_volume::instance_mappings_xml(w, "blockDeviceMapping", &volumes);
            }
            ("groupSet", None) => {
                w.start("groupSet");
                for g in &groups {
                    w.start("item")
                        .elem("groupId", &g.id)
                        .elem("groupName", &g.name)
                        .end("item");
                }
                w.end("groupSet");
            }
            ("enclaveOptions", None) => {
                w.start("enclaveOptions")
                    .elem("enabled", "false")
                    .end("enclaveOptions");
            }
            _ => {
                w.empty("productCodes");
            }
        }
    }))
}

fn parse_bool(v: &str, field: &str) -> Result<bool, ServiceError> {
    match v.to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        _ => Err(ServiceError::InvalidParameterValue(format!(
            "Value ({v}) for parameter {field} is invalid. Expecting true or false."
        ))),
    }
}

/// One change from `Attribute` and `Value`.
fn from_attribute(name: &str, v: &str) -> Result<AttrChange, ServiceError> {
    let b = || parse_bool(v, name);
    Ok(match name {
        "instanceType" => AttrChange::InstanceType(v.into()),
        "userData" => AttrChange::UserData(v.into()),
        "disableApiTermination" => AttrChange::DisableApiTermination(b()?),
        "disableApiStop" => AttrChange::DisableApiStop(b()?),
        "instanceInitiatedShutdownBehavior" => AttrChange::ShutdownBehavior(v.into()),
        "sourceDestCheck" => AttrChange::SourceDestCheck(b()?),
        "ebsOptimized" => AttrChange::EbsOptimized(b()?),
        "enaSupport" => AttrChange::EnaSupport(b()?),
        "sriovNetSupport" => AttrChange::SriovNetSupport(v.into()),
        "kernel" | "ramdisk" => {
            return Err(ServiceError::UnsupportedOperation(format!(
                "The {name} attribute cannot be modified for HVM instances"
            )));
        }
        "rootDeviceName" | "productCodes" | "enclaveOptions" | "blockDeviceMapping"
        | "groupSet" => {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Value ({name}) for parameter attribute is invalid. The attribute cannot be modified with Value."
            )));
        }
        other => {
            return Err(ServiceError::InvalidParameterValue(format!(
                "Value ({other}) for parameter attribute is invalid. Unknown attribute."
            )));
        }
    })
}

/// Every change the request asks for, from `Attribute`/`Value` and the
/// per-attribute `<Name>.Value` fields.
fn attr_changes(p: &Params) -> Result<Vec<AttrChange>, ServiceError> {
    let mut out = Vec::new();
    if let Some(name) = p.get("Attribute") {
        let v = p.get("Value").unwrap_or("");
        out.push(from_attribute(name, v)?);
    }
    for (field, name) in [
        ("InstanceType", "instanceType"),
        ("UserData", "userData"),
        ("DisableApiTermination", "disableApiTermination"),
        ("DisableApiStop", "disableApiStop"),
        (
            "InstanceInitiatedShutdownBehavior",
            "instanceInitiatedShutdownBehavior",
        ),
        ("SourceDestCheck", "sourceDestCheck"),
        ("EbsOptimized", "ebsOptimized"),
        ("EnaSupport", "enaSupport"),
        ("SriovNetSupport", "sriovNetSupport"),
        ("Kernel", "kernel"),
        ("Ramdisk", "ramdisk"),
    ] {
        if let Some(v) = p.sub(field).get("Value") {
            out.push(from_attribute(name, v)?);
        }
    }
    let groups = ids(p, "GroupId");
    if !groups.is_empty() {
        out.push(AttrChange::Groups(groups));
    }
    let mappings = p.structs("BlockDeviceMapping");
    if !mappings.is_empty() {
        let list = mappings
            .iter()
            .map(|m| {
                let device = m.get("DeviceName").unwrap_or("").to_string();
                let v = m
                    .sub("Ebs")
                    .get("DeleteOnTermination")
                    .unwrap_or("true")
                    .to_string();
                Ok((device, parse_bool(&v, "deleteOnTermination")?))
            })
            .collect::<Result<Vec<_>, ServiceError>>()?;
        out.push(AttrChange::DeleteOnTermination(list));
    }
    Ok(out)
}

async fn modify_attribute(req: &mut Req, p: &Params, dry: bool) -> Out {
    let account = req.caller.account.clone();
    let iid = required(p, "InstanceId")?.to_string();
    let changes = attr_changes(p)?;
    let change = crate::ec2::one_attribute(&changes, AttrChange::name)?;
    keycard_services::instance_attrs::check_change(&change)?;
    let inst = req.kc.instance(&account, &iid)?;
    req.request_key("ec2:Attribute", change.name());
    req.authorize_instance("ec2:ModifyInstanceAttribute", &inst)?;
    if let AttrChange::Groups(g) = &change {
        req.authorize_groups("ec2:ModifyInstanceAttribute", g)?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    req.kc
        .modify_instance_attribute(&account, &iid, &change)
        .await?;
    req.audit
        .resources
        .push((inst.arn(), "AWS::EC2::Instance".into()));
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

fn reboot(req: &mut Req, p: &Params, dry: bool) -> Out {
    let account = req.caller.account.clone();
    let wanted = ids(p, "InstanceId");
    if wanted.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter InstanceId".into(),
        ));
    }
    let (found, _) = req
        .kc
        .describe_instances(&account, &wanted, &[], None, None)?;
    for i in &found {
        req.authorize_instance("ec2:RebootInstances", i)?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    req.kc.check_reboot(&account, &wanted)?;
    Ok(respond(req, |w| {
        w.elem("return", "true");
    }))
}

fn describe_types(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let limit = ec2::max_results(p.get("MaxResults"), 5, 100)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    let list = instance_types::describe(&ids(p, "InstanceType"), &filters(p))?;
    let (list, next) = vpc::page(list, after.as_deref(), limit, |t: &InstanceType| t.name);
    Ok(respond(req, |w| {
        w.start("instanceTypeSet");
        for t in &list {
            type_xml(w, t);
        }
        w.end("instanceTypeSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

fn list_xml(w: &mut XmlWriter, tag: &str, items: &[String]) {
    w.start(tag);
    for i in items {
        w.elem("item", i);
    }
    w.end(tag);
}

fn type_xml(w: &mut XmlWriter, t: &InstanceType) {
    let arch: Vec<String> = t.arch.iter().map(|a| a.to_string()).collect();
    w.start("item")
        .elem("instanceType", t.name)
        .elem("currentGeneration", flag(t.current_generation))
        .elem("freeTierEligible", flag(t.free_tier));
    list_xml(
        w,
        "supportedUsageClasses",
        &instance_types::usage_classes(t),
    );
    list_xml(w, "supportedRootDeviceTypes", &["ebs".into()]);
    list_xml(w, "supportedVirtualizationTypes", &["hvm".into()]);
    w.elem("bareMetal", "false")
        .elem("hypervisor", t.hypervisor)
        .start("processorInfo");
    list_xml(w, "supportedArchitectures", &arch);
    if t.clock_ghz > 0.0 {
        w.elem("sustainedClockSpeedInGhz", &format!("{:.1}", t.clock_ghz));
    }
    w.elem("manufacturer", t.manufacturer)
        .end("processorInfo")
        .start("vCpuInfo")
        .elem_display("defaultVCpus", t.vcpus)
        .elem_display("defaultCores", t.cores)
        .elem_display("defaultThreadsPerCore", t.threads_per_core)
        .end("vCpuInfo")
        .start("memoryInfo")
        .elem_display("sizeInMiB", t.memory_mib)
        .end("memoryInfo")
        .elem("instanceStorageSupported", "false")
        .start("ebsInfo")
        .elem(
            "ebsOptimizedSupport",
            if t.hypervisor == "nitro" {
                "default"
            } else {
                "unsupported"
            },
        )
        .elem("encryptionSupport", "supported")
        .elem(
            "nvmeSupport",
            if t.hypervisor == "nitro" {
                "required"
            } else {
                "unsupported"
            },
        )
        .end("ebsInfo")
        .start("networkInfo")
        .elem("networkPerformance", t.network)
        .elem_display("maximumNetworkInterfaces", t.max_enis)
        .elem_display("maximumNetworkCards", 1)
        .elem_display("defaultNetworkCardIndex", 0)
        .elem_display("ipv4AddressesPerInterface", t.ipv4_per_eni)
        .elem_display("ipv6AddressesPerInterface", t.ipv4_per_eni)
        .elem("ipv6Supported", flag(t.hypervisor == "nitro"))
        .elem("enaSupport", instance_types::ena_support(t))
        .elem("efaSupported", "false")
        .end("networkInfo")
        .elem("hibernationSupported", flag(t.current_generation))
        .elem("burstablePerformanceSupported", flag(t.burstable))
        .elem("dedicatedHostsSupported", flag(!t.burstable))
        .elem("autoRecoverySupported", "true");
    list_xml(
        w,
        "supportedBootModes",
        &["legacy-bios".into(), "uefi".into()],
    );
    w.end("item");
}

/// The burstable instances a credit call names (or all of them).
fn burstable(req: &mut Req, p: &Params, fs: &[Filter]) -> Result<Vec<Instance>, ServiceError> {
    let account = req.caller.account.clone();
    let wanted = ids(p, "InstanceId");
    let (found, _) = req
        .kc
        .describe_instances(&account, &wanted, fs, None, None)?;
    Ok(found
        .into_iter()
        .filter(|i| !i.is_terminated() && cpu_credits(i).is_some())
        .collect())
}

fn describe_credits(req: &mut Req, p: &Params, dry: bool) -> Out {
    req.authorize_describe(dry)?;
    let fs = filters(p);
    ec2::check_filters(&fs, &["instance-id"])?;
    let limit = ec2::max_results(p.get("MaxResults"), 5, 1000)?;
    let after = p.get("NextToken").map(ec2::parse_next_token).transpose()?;
    let list = burstable(req, p, &fs)?;
    let (list, next) = vpc::page(list, after.as_deref(), limit, |i: &Instance| &i.id);
    Ok(respond(req, |w| {
        w.start("instanceCreditSpecificationSet");
        for i in &list {
            w.start("item")
                .elem("instanceId", &i.id)
                .elem("cpuCredits", &cpu_credits(i).unwrap_or_default())
                .end("item");
        }
        w.end("instanceCreditSpecificationSet");
        if let Some(n) = &next {
            w.elem("nextToken", n);
        }
    }))
}

async fn modify_credits(req: &mut Req, p: &Params, dry: bool) -> Out {
    let account = req.caller.account.clone();
    let specs: Vec<(String, String)> = p
        .structs("InstanceCreditSpecification")
        .iter()
        .map(|s| {
            (
                s.get("InstanceId").unwrap_or("").to_string(),
                s.get("CpuCredits").unwrap_or("").to_string(),
            )
        })
        .collect();
    if specs.is_empty() {
        return Err(ServiceError::MissingParameter(
            "The request must contain the parameter InstanceCreditSpecifications".into(),
        ));
    }
    for (_, c) in &specs {
        keycard_services::instance_attrs::check_cpu_credits(c)?;
    }
    let wanted: Vec<String> = specs.iter().map(|(i, _)| i.clone()).collect();
    let (found, _) = req
        .kc
        .describe_instances(&account, &wanted, &[], None, None)?;
    for i in &found {
        req.authorize_instance("ec2:ModifyInstanceCreditSpecification", i)?;
    }
    if dry {
        return Err(dry_run_ok());
    }
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for (id, credits) in &specs {
        match req.kc.set_cpu_credits(&account, id, credits).await {
            Ok(()) => ok.push(id.clone()),
            Err(e) => failed.push((id.clone(), e)),
        }
    }
    Ok(respond(req, |w| {
        w.start("successfulInstanceCreditSpecificationSet");
        for id in &ok {
            w.start("item").elem("instanceId", id).end("item");
        }
        w.end("successfulInstanceCreditSpecificationSet")
            .start("unsuccessfulInstanceCreditSpecificationSet");
        for (id, e) in &failed {
            w.start("item")
                .elem("instanceId", id)
                .start("error")
                .elem("code", e.code())
                .elem("message", &e.to_string())
                .end("error")
                .end("item");
        }
        w.end("unsuccessfulInstanceCreditSpecificationSet");
    }))
}
