//! The instance types DescribeInstanceTypes lists: a small catalogue of
//! common types with AWS's published specifications (EC2 instance type
//! specifications). RunInstances accepts any well-formed type name; this
//! list is what keycard can describe.

use crate::ec2::Filter;
use crate::error::{Result, ServiceError};
use crate::vpc::{self, Facts};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InstanceType {
    pub name: &'static str,
    pub vcpus: u32,
    pub cores: u32,
    pub threads_per_core: u32,
    pub memory_mib: u32,
    pub arch: &'static [&'static str],
    pub manufacturer: &'static str,
    pub clock_ghz: f32,
    /// `nitro` | `xen`
    pub hypervisor: &'static str,
    pub network: &'static str,
    pub max_enis: u32,
    pub ipv4_per_eni: u32,
    pub burstable: bool,
    pub free_tier: bool,
    pub current_generation: bool,
}

const X86: &[&str] = &["x86_64"];
const X86_32: &[&str] = &["i386", "x86_64"];
const ARM: &[&str] = &["arm64"];

const fn t(
    name: &'static str,
    (vcpus, cores, threads_per_core): (u32, u32, u32),
    memory_mib: u32,
    (arch, manufacturer, clock_ghz): (&'static [&'static str], &'static str, f32),
    (network, max_enis, ipv4_per_eni): (&'static str, u32, u32),
    (burstable, free_tier): (bool, bool),
) -> InstanceType {
    InstanceType {
        name,
        vcpus,
        cores,
        threads_per_core,
        memory_mib,
        arch,
        manufacturer,
        clock_ghz,
        hypervisor: "nitro",
        network,
        max_enis,
        ipv4_per_eni,
        burstable,
        free_tier,
        current_generation: true,
    }
}

const UP_TO_5: &str = "Up to 5 Gigabit";
const UP_TO_10: &str = "Up to 10 Gigabit";
const INTEL: (&[&str], &str, f32) = (X86, "Intel", 2.5);

pub const CATALOGUE: &[InstanceType] = &[
    InstanceType {
        hypervisor: "xen",
        current_generation: false,
        ..t(
            "m1.small",
            (1, 1, 1),
            1740,
            (X86_32, "Intel", 0.0),
            ("Low", 2, 4),
            (false, false),
        )
    },
    InstanceType {
        hypervisor: "xen",
        ..t(
            "t2.micro",
            (1, 1, 1),
            1024,
            (X86_32, "Intel", 2.5),
            ("Low to Moderate", 2, 2),
            (true, true),
        )
    },
    t(
        "t3.nano",
        (2, 1, 2),
        512,
        INTEL,
        (UP_TO_5, 2, 2),
        (true, false),
    ),
    t(
        "t3.micro",
        (2, 1, 2),
        1024,
        INTEL,
        (UP_TO_5, 2, 2),
        (true, true),
    ),
    t(
        "t3.small",
        (2, 1, 2),
        2048,
        INTEL,
        (UP_TO_5, 3, 4),
        (true, false),
    ),
    t(
        "t3.medium",
        (2, 1, 2),
        4096,
        INTEL,
        (UP_TO_5, 3, 6),
        (true, false),
    ),
    t(
        "t3.large",
        (2, 1, 2),
        8192,
        INTEL,
        (UP_TO_5, 3, 12),
        (true, false),
    ),
    t(
        "t4g.micro",
        (2, 2, 1),
        1024,
        (ARM, "AWS", 2.5),
        (UP_TO_5, 2, 2),
        (true, false),
    ),
    t(
        "m5.large",
        (2, 1, 2),
        8192,
        (X86, "Intel", 3.1),
        (UP_TO_10, 3, 10),
        (false, false),
    ),
    t(
        "m5.xlarge",
        (4, 2, 2),
        16384,
        (X86, "Intel", 3.1),
        (UP_TO_10, 4, 15),
        (false, false),
    ),
    t(
        "c5.large",
        (2, 1, 2),
        4096,
        (X86, "Intel", 3.4),
        (UP_TO_10, 3, 10),
        (false, false),
    ),
    t(
        "r5.large",
        (2, 1, 2),
        16384,
        (X86, "Intel", 3.1),
        (UP_TO_10, 3, 10),
        (false, false),
    ),
];

pub const TYPE_FILTERS: &[&str] = &[
    "instance-type",
    "current-generation",
    "free-tier-eligible",
    "burstable-performance-supported",
    "bare-metal",
    "hypervisor",
    "processor-info.supported-architecture",
    "processor-info.manufacturer",
    "vcpu-info.default-vcpus",
    "vcpu-info.default-cores",
    "vcpu-info.default-threads-per-core",
    "memory-info.size-in-mib",
    "network-info.ena-support",
    "network-info.maximum-network-interfaces",
    "network-info.ipv4-addresses-per-interface",
    "network-info.network-performance",
    "supported-root-device-type",
    "supported-usage-class",
    "supported-virtualization-type",
];

fn flag(b: bool) -> String {
    if b { "true" } else { "false" }.into()
}

pub fn type_facts(t: &InstanceType) -> Facts {
    let one = |n: &'static str, v: String| (n, vec![v]);
    vec![
        one("instance-type", t.name.into()),
        one("current-generation", flag(t.current_generation)),
        one("free-tier-eligible", flag(t.free_tier)),
        one("burstable-performance-supported", flag(t.burstable)),
        one("bare-metal", flag(false)),
        one("hypervisor", t.hypervisor.into()),
        (
            "processor-info.supported-architecture",
            t.arch.iter().map(|a| a.to_string()).collect(),
        ),
        one("processor-info.manufacturer", t.manufacturer.into()),
        one("vcpu-info.default-vcpus", t.vcpus.to_string()),
        one("vcpu-info.default-cores", t.cores.to_string()),
        one(
            "vcpu-info.default-threads-per-core",
            t.threads_per_core.to_string(),
        ),
        one("memory-info.size-in-mib", t.memory_mib.to_string()),
        one("network-info.ena-support", ena_support(t).into()),
        one(
            "network-info.maximum-network-interfaces",
            t.max_enis.to_string(),
        ),
        one(
            "network-info.ipv4-addresses-per-interface",
            t.ipv4_per_eni.to_string(),
        ),
        one("network-info.network-performance", t.network.into()),
        one("supported-root-device-type", "ebs".into()),
        ("supported-usage-class", usage_classes(t)),
        one("supported-virtualization-type", "hvm".into()),
    ]
}

/// Nitro types require ENA; the Xen ones here have none.
pub fn ena_support(t: &InstanceType) -> &'static str {
    if t.hypervisor == "nitro" {
        "required"
    } else {
        "unsupported"
    }
}

/// Current types run on demand and as Spot; old ones on demand only.
pub fn usage_classes(t: &InstanceType) -> Vec<String> {
    if t.current_generation {
        vec!["on-demand".into(), "spot".into()]
    } else {
        vec!["on-demand".into()]
    }
}

/// The types named (all must exist), filtered.
pub fn describe(names: &[String], filters: &[Filter]) -> Result<Vec<InstanceType>> {
    let missing: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|n| !CATALOGUE.iter().any(|t| t.name == *n))
        .collect();
    if !missing.is_empty() {
        return Err(ServiceError::Modeled(
            "InvalidInstanceType",
            400,
            format!(
                "The following supplied instance types do not exist: [{}]",
                missing.join(", ")
            ),
        ));
    }
    let chosen: Vec<InstanceType> = CATALOGUE
        .iter()
        .filter(|t| names.is_empty() || names.iter().any(|n| n == t.name))
        .copied()
        .collect();
    vpc::select(chosen, filters, TYPE_FILTERS, type_facts)
}
