//! Operations as data: one table per service. Each row says what an
//! operation is called, which IAM actions every successful call of it must
//! have decided, which it may also need, whether it only reads, and whether
//! CloudTrail counts it as a data event. Routing ("does this operation
//! exist"), the audit event's name, source and read-only flag, the
//! dispatcher's authorization guard, `keycard operations` and the coverage
//! document all come from these rows.

use crate::render::Protocol;

/// One operation of one service.
#[derive(Debug, PartialEq, Eq)]
pub struct OpDef {
    pub protocol: Protocol,
    /// AWS's operation name (the audit event name).
    pub name: &'static str,
    /// Actions decided on every successful call. Empty only where AWS
    /// requires no permission (`sts:GetCallerIdentity`, `GetSessionToken`).
    pub actions: &'static [&'static str],
    /// Actions decided only for some inputs (`iam:PassRole` when a role is
    /// passed, `sts:TagSession` when tags are given, …).
    pub conditional: &'static [&'static str],
    /// Actions decided instead of `actions` when the request names an
    /// object version (S3 `?versionId=`: `s3:GetObjectVersion`, …).
    pub versioned: &'static [&'static str],
    pub read_only: bool,
    /// CloudTrail data event (object-level S3) rather than management.
    pub data_event: bool,
}

impl OpDef {
    /// The service's event source, e.g. `iam.amazonaws.com`.
    pub fn event_source(&self) -> &'static str {
        self.protocol.event_source()
    }

    /// The actions a call decides: the version actions when it names a
    /// version and the row has them.
    pub fn required(&self, names_version: bool) -> &'static [&'static str] {
        if names_version && !self.versioned.is_empty() {
            self.versioned
        } else {
            self.actions
        }
    }

    /// The one action of a single-action row (S3's), per [`Self::required`].
    pub fn action(&self, names_version: bool) -> &'static str {
        self.required(names_version).first().copied().unwrap_or("")
    }
}

/// A row whose one required action is `<prefix>:<name>`.
macro_rules! same {
    ($p:ident, $prefix:literal, $name:literal, $ro:expr) => {
        OpDef {
            protocol: Protocol::$p,
            name: $name,
            actions: &[concat!($prefix, ":", $name)],
            conditional: &[],
            versioned: &[],
            read_only: $ro,
            data_event: false,
        }
    };
    ($p:ident, $prefix:literal, $name:literal, $ro:expr, [$($c:literal),*]) => {
        OpDef {
            protocol: Protocol::$p,
            name: $name,
            actions: &[concat!($prefix, ":", $name)],
            conditional: &[$($c),*],
            versioned: &[],
            read_only: $ro,
            data_event: false,
        }
    };
}

const RO: bool = true;
const RW: bool = false;

/// IAM: every operation's action is `iam:<Operation>`.
pub static IAM: &[OpDef] = &[
    same!(Iam, "iam", "CreateUser", RW, ["iam:TagUser"]),
    same!(Iam, "iam", "GetUser", RO),
    same!(Iam, "iam", "ListUsers", RO),
    same!(Iam, "iam", "UpdateUser", RW),
    same!(Iam, "iam", "DeleteUser", RW),
    same!(Iam, "iam", "CreateAccessKey", RW),
    same!(Iam, "iam", "ListAccessKeys", RO),
    same!(Iam, "iam", "UpdateAccessKey", RW),
    same!(Iam, "iam", "DeleteAccessKey", RW),
    same!(Iam, "iam", "GetAccessKeyLastUsed", RO),
    same!(Iam, "iam", "CreateGroup", RW),
    same!(Iam, "iam", "GetGroup", RO),
    same!(Iam, "iam", "ListGroups", RO),
    same!(Iam, "iam", "ListGroupsForUser", RO),
    same!(Iam, "iam", "DeleteGroup", RW),
    same!(Iam, "iam", "AddUserToGroup", RW),
    same!(Iam, "iam", "RemoveUserFromGroup", RW),
    same!(Iam, "iam", "CreateRole", RW, ["iam:TagRole"]),
    same!(Iam, "iam", "GetRole", RO),
    same!(Iam, "iam", "ListRoles", RO),
    same!(Iam, "iam", "UpdateRole", RW),
    same!(Iam, "iam", "UpdateRoleDescription", RW),
    same!(Iam, "iam", "UpdateAssumeRolePolicy", RW),
    same!(Iam, "iam", "DeleteRole", RW),
    same!(Iam, "iam", "TagUser", RW),
    same!(Iam, "iam", "UntagUser", RW),
    same!(Iam, "iam", "ListUserTags", RO),
    same!(Iam, "iam", "TagRole", RW),
    same!(Iam, "iam", "UntagRole", RW),
    same!(Iam, "iam", "ListRoleTags", RO),
    same!(Iam, "iam", "CreatePolicy", RW, ["iam:TagPolicy"]),
    same!(Iam, "iam", "GetPolicy", RO),
    same!(Iam, "iam", "ListPolicies", RO),
    same!(Iam, "iam", "CreatePolicyVersion", RW),
    same!(Iam, "iam", "GetPolicyVersion", RO),
    same!(Iam, "iam", "ListPolicyVersions", RO),
    same!(Iam, "iam", "SetDefaultPolicyVersion", RW),
    same!(Iam, "iam", "DeletePolicyVersion", RW),
    same!(Iam, "iam", "DeletePolicy", RW),
    same!(Iam, "iam", "ListEntitiesForPolicy", RO),
    same!(Iam, "iam", "AttachUserPolicy", RW),
    same!(Iam, "iam", "AttachGroupPolicy", RW),
    same!(Iam, "iam", "AttachRolePolicy", RW),
    same!(Iam, "iam", "DetachUserPolicy", RW),
    same!(Iam, "iam", "DetachGroupPolicy", RW),
    same!(Iam, "iam", "DetachRolePolicy", RW),
    same!(Iam, "iam", "ListAttachedUserPolicies", RO),
    same!(Iam, "iam", "ListAttachedGroupPolicies", RO),
    same!(Iam, "iam", "ListAttachedRolePolicies", RO),
    same!(Iam, "iam", "PutUserPolicy", RW),
    same!(Iam, "iam", "PutGroupPolicy", RW),
    same!(Iam, "iam", "PutRolePolicy", RW),
    same!(Iam, "iam", "GetUserPolicy", RO),
    same!(Iam, "iam", "GetGroupPolicy", RO),
    same!(Iam, "iam", "GetRolePolicy", RO),
    same!(Iam, "iam", "DeleteUserPolicy", RW),
    same!(Iam, "iam", "DeleteGroupPolicy", RW),
    same!(Iam, "iam", "DeleteRolePolicy", RW),
    same!(Iam, "iam", "ListUserPolicies", RO),
    same!(Iam, "iam", "ListGroupPolicies", RO),
    same!(Iam, "iam", "ListRolePolicies", RO),
    same!(Iam, "iam", "PutUserPermissionsBoundary", RW),
    same!(Iam, "iam", "PutRolePermissionsBoundary", RW),
    same!(Iam, "iam", "DeleteUserPermissionsBoundary", RW),
    same!(Iam, "iam", "DeleteRolePermissionsBoundary", RW),
    same!(
        Iam,
        "iam",
        "CreateInstanceProfile",
        RW,
        ["iam:TagInstanceProfile"]
    ),
    same!(Iam, "iam", "GetInstanceProfile", RO),
    same!(Iam, "iam", "DeleteInstanceProfile", RW),
    same!(Iam, "iam", "AddRoleToInstanceProfile", RW),
    same!(Iam, "iam", "RemoveRoleFromInstanceProfile", RW),
    same!(Iam, "iam", "ListInstanceProfiles", RO),
    same!(Iam, "iam", "ListInstanceProfilesForRole", RO),
    same!(Iam, "iam", "GetAccountSummary", RO),
    same!(Iam, "iam", "GetAccountAuthorizationDetails", RO),
    // Governance records (server/src/iam_governance.rs).
    same!(Iam, "iam", "CreateLoginProfile", RW),
    same!(Iam, "iam", "GetLoginProfile", RO),
    same!(Iam, "iam", "UpdateLoginProfile", RW),
    same!(Iam, "iam", "DeleteLoginProfile", RW),
    same!(Iam, "iam", "ChangePassword", RW),
    same!(Iam, "iam", "UpdateAccountPasswordPolicy", RW),
    same!(Iam, "iam", "GetAccountPasswordPolicy", RO),
    same!(Iam, "iam", "DeleteAccountPasswordPolicy", RW),
    same!(
        Iam,
        "iam",
        "CreateVirtualMFADevice",
        RW,
        ["iam:TagMFADevice"]
    ),
    same!(Iam, "iam", "EnableMFADevice", RW),
    same!(Iam, "iam", "DeactivateMFADevice", RW),
    same!(Iam, "iam", "DeleteVirtualMFADevice", RW),
    same!(Iam, "iam", "ListVirtualMFADevices", RO),
    same!(Iam, "iam", "ListMFADevices", RO),
    same!(Iam, "iam", "ResyncMFADevice", RW),
    same!(Iam, "iam", "CreateAccountAlias", RW),
    same!(Iam, "iam", "DeleteAccountAlias", RW),
    same!(Iam, "iam", "ListAccountAliases", RO),
    same!(Iam, "iam", "GenerateCredentialReport", RW),
    same!(Iam, "iam", "GetCredentialReport", RO),
    same!(Iam, "iam", "GenerateServiceLastAccessedDetails", RO),
    same!(Iam, "iam", "GetServiceLastAccessedDetails", RO),
    // Federation (server/src/federation.rs).
    same!(Iam, "iam", "ListOpenIDConnectProviders", RO),
    same!(
        Iam,
        "iam",
        "CreateOpenIDConnectProvider",
        RW,
        ["iam:TagOpenIDConnectProvider"]
    ),
    same!(Iam, "iam", "GetOpenIDConnectProvider", RO),
    same!(Iam, "iam", "DeleteOpenIDConnectProvider", RW),
    same!(Iam, "iam", "AddClientIDToOpenIDConnectProvider", RW),
    same!(Iam, "iam", "RemoveClientIDFromOpenIDConnectProvider", RW),
    same!(Iam, "iam", "UpdateOpenIDConnectProviderThumbprint", RW),
    same!(Iam, "iam", "TagOpenIDConnectProvider", RW),
    same!(Iam, "iam", "UntagOpenIDConnectProvider", RW),
    same!(Iam, "iam", "ListOpenIDConnectProviderTags", RO),
    same!(Iam, "iam", "EnableOutboundWebIdentityFederation", RW),
    same!(Iam, "iam", "DisableOutboundWebIdentityFederation", RW),
    same!(Iam, "iam", "GetOutboundWebIdentityFederationInfo", RO),
    same!(
        Iam,
        "iam",
        "CreateSAMLProvider",
        RW,
        ["iam:TagSAMLProvider"]
    ),
    same!(Iam, "iam", "GetSAMLProvider", RO),
    same!(Iam, "iam", "UpdateSAMLProvider", RW),
    same!(Iam, "iam", "DeleteSAMLProvider", RW),
    same!(Iam, "iam", "ListSAMLProviders", RO),
    same!(Iam, "iam", "TagSAMLProvider", RW),
    same!(Iam, "iam", "UntagSAMLProvider", RW),
    same!(Iam, "iam", "ListSAMLProviderTags", RO),
    same!(Iam, "iam", "ListOrganizationsFeatures", RO),
    // Tags, credentials, certificates, service-linked roles (server/src/iam_more.rs).
    same!(Iam, "iam", "UpdateGroup", RW),
    same!(Iam, "iam", "GetMFADevice", RO),
    same!(Iam, "iam", "TagPolicy", RW),
    same!(Iam, "iam", "UntagPolicy", RW),
    same!(Iam, "iam", "ListPolicyTags", RO),
    same!(Iam, "iam", "TagInstanceProfile", RW),
    same!(Iam, "iam", "UntagInstanceProfile", RW),
    same!(Iam, "iam", "ListInstanceProfileTags", RO),
    same!(Iam, "iam", "TagMFADevice", RW),
    same!(Iam, "iam", "UntagMFADevice", RW),
    same!(Iam, "iam", "ListMFADeviceTags", RO),
    same!(Iam, "iam", "TagServerCertificate", RW),
    same!(Iam, "iam", "UntagServerCertificate", RW),
    same!(Iam, "iam", "ListServerCertificateTags", RO),
    same!(Iam, "iam", "UploadSSHPublicKey", RW),
    same!(Iam, "iam", "GetSSHPublicKey", RO),
    same!(Iam, "iam", "ListSSHPublicKeys", RO),
    same!(Iam, "iam", "UpdateSSHPublicKey", RW),
    same!(Iam, "iam", "DeleteSSHPublicKey", RW),
    same!(Iam, "iam", "UploadSigningCertificate", RW),
    same!(Iam, "iam", "ListSigningCertificates", RO),
    same!(Iam, "iam", "UpdateSigningCertificate", RW),
    same!(Iam, "iam", "DeleteSigningCertificate", RW),
    same!(
        Iam,
        "iam",
        "UploadServerCertificate",
        RW,
        ["iam:TagServerCertificate"]
    ),
    same!(Iam, "iam", "GetServerCertificate", RO),
    same!(Iam, "iam", "ListServerCertificates", RO),
    same!(Iam, "iam", "UpdateServerCertificate", RW),
    same!(Iam, "iam", "DeleteServerCertificate", RW),
    same!(Iam, "iam", "CreateServiceSpecificCredential", RW),
    same!(Iam, "iam", "ListServiceSpecificCredentials", RO),
    same!(Iam, "iam", "ResetServiceSpecificCredential", RW),
    same!(Iam, "iam", "UpdateServiceSpecificCredential", RW),
    same!(Iam, "iam", "DeleteServiceSpecificCredential", RW),
    same!(Iam, "iam", "CreateServiceLinkedRole", RW),
    same!(Iam, "iam", "DeleteServiceLinkedRole", RW),
    same!(Iam, "iam", "GetServiceLinkedRoleDeletionStatus", RO),
    // Account-level operations (server/src/iam_account.rs).
    same!(Iam, "iam", "SetSecurityTokenServicePreferences", RW),
    same!(Iam, "iam", "ListPoliciesGrantingServiceAccess", RO),
    same!(Iam, "iam", "GetServiceLastAccessedDetailsWithEntities", RO),
    same!(
        Iam,
        "iam",
        "EnableOrganizationsRootCredentialsManagement",
        RW
    ),
    same!(
        Iam,
        "iam",
        "DisableOrganizationsRootCredentialsManagement",
        RW
    ),
    same!(Iam, "iam", "EnableOrganizationsRootSessions", RW),
    same!(Iam, "iam", "DisableOrganizationsRootSessions", RW),
    same!(Iam, "iam", "GenerateOrganizationsAccessReport", RW),
    same!(Iam, "iam", "GetOrganizationsAccessReport", RO),
    same!(Iam, "iam", "CreateDelegationRequest", RW),
    same!(Iam, "iam", "GetDelegationRequest", RO),
    same!(Iam, "iam", "ListDelegationRequests", RO),
    same!(Iam, "iam", "AcceptDelegationRequest", RW),
    same!(Iam, "iam", "RejectDelegationRequest", RW),
    same!(Iam, "iam", "UpdateDelegationRequest", RW),
    same!(Iam, "iam", "AssociateDelegationRequest", RW),
    same!(Iam, "iam", "SendDelegationToken", RW),
    same!(Iam, "iam", "GetHumanReadableSummary", RO),
    // The policy simulator (server/src/iam_simulate.rs).
    same!(Iam, "iam", "SimulatePrincipalPolicy", RO),
    same!(Iam, "iam", "SimulateCustomPolicy", RO),
    same!(Iam, "iam", "GetContextKeysForPrincipalPolicy", RO),
    same!(Iam, "iam", "GetContextKeysForCustomPolicy", RO),
];

/// STS. GetCallerIdentity and GetSessionToken need no permission on AWS.
pub static STS: &[OpDef] = &[
    OpDef {
        protocol: Protocol::Sts,
        name: "GetCallerIdentity",
        actions: &[],
        conditional: &[],
        versioned: &[],
        read_only: RO,
        data_event: false,
    },
    OpDef {
        protocol: Protocol::Sts,
        name: "GetSessionToken",
        actions: &[],
        conditional: &[],
        versioned: &[],
        read_only: RO,
        data_event: false,
    },
    same!(
        Sts,
        "sts",
        "AssumeRole",
        RW,
        ["sts:TagSession", "sts:SetSourceIdentity"]
    ),
    same!(Sts, "sts", "GetAccessKeyInfo", RO),
    same!(Sts, "sts", "DecodeAuthorizationMessage", RO),
    // Federation (server/src/federation.rs). AssumeRoleWithWebIdentity is
    // unsigned: its action is decided against the role's trust policy.
    same!(Sts, "sts", "AssumeRoleWithWebIdentity", RW),
    same!(Sts, "sts", "AssumeRoleWithSAML", RW),
    same!(
        Sts,
        "sts",
        "GetWebIdentityToken",
        RO,
        ["sts:TagGetWebIdentityToken"]
    ),
    same!(Sts, "sts", "GetFederationToken", RW, ["sts:TagSession"]),
    same!(Sts, "sts", "AssumeRoot", RW),
    same!(Sts, "sts", "GetDelegatedAccessToken", RW),
];

/// EC2's instance and instance-profile operations.
pub static EC2: &[OpDef] = &[
    same!(
        Ec2,
        "ec2",
        "RunInstances",
        RW,
        ["iam:PassRole", "ec2:CreateTags"]
    ),
    same!(Ec2, "ec2", "DescribeInstances", RO),
    same!(Ec2, "ec2", "DescribeInstanceStatus", RO),
    same!(Ec2, "ec2", "StartInstances", RW),
    same!(Ec2, "ec2", "StopInstances", RW),
    same!(Ec2, "ec2", "TerminateInstances", RW),
    same!(
        Ec2,
        "ec2",
        "AssociateIamInstanceProfile",
        RW,
        ["iam:PassRole"]
    ),
    same!(Ec2, "ec2", "DisassociateIamInstanceProfile", RW),
    same!(
        Ec2,
        "ec2",
        "ReplaceIamInstanceProfileAssociation",
        RW,
        ["iam:PassRole"]
    ),
    same!(Ec2, "ec2", "DescribeIamInstanceProfileAssociations", RO),
    same!(Ec2, "ec2", "ModifyInstanceMetadataOptions", RW),
    same!(Ec2, "ec2", "DescribeInstanceAttribute", RO),
    same!(Ec2, "ec2", "CreateTags", RW),
    same!(Ec2, "ec2", "DeleteTags", RW),
    same!(Ec2, "ec2", "DescribeTags", RO),
    same!(Ec2, "ec2", "ModifyInstanceAttribute", RW),
    same!(Ec2, "ec2", "RebootInstances", RW),
    same!(Ec2, "ec2", "DescribeInstanceTypes", RO),
    same!(Ec2, "ec2", "DescribeInstanceCreditSpecifications", RO),
    same!(Ec2, "ec2", "ModifyInstanceCreditSpecification", RW),
    // EBS volumes (ec2_volume.rs).
    same!(Ec2, "ec2", "CreateVolume", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "AttachVolume", RW),
    same!(Ec2, "ec2", "DetachVolume", RW),
    same!(Ec2, "ec2", "DeleteVolume", RW),
    // Network interfaces (ec2_eni.rs).
    same!(Ec2, "ec2", "CreateNetworkInterface", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "DeleteNetworkInterface", RW),
    same!(Ec2, "ec2", "AttachNetworkInterface", RW),
    same!(Ec2, "ec2", "DetachNetworkInterface", RW),
    same!(Ec2, "ec2", "ModifyNetworkInterfaceAttribute", RW),
    same!(Ec2, "ec2", "DescribeNetworkInterfaceAttribute", RO),
    // The network surface (ec2_network.rs): the default VPC and its
    // parts, and empty answers for what keycard has none of.
    same!(Ec2, "ec2", "DescribeRegions", RO),
    same!(Ec2, "ec2", "DescribeAvailabilityZones", RO),
    same!(Ec2, "ec2", "DescribeVpcs", RO),
    same!(Ec2, "ec2", "DescribeSubnets", RO),
    same!(Ec2, "ec2", "DescribeSecurityGroups", RO),
    same!(Ec2, "ec2", "DescribeNetworkAcls", RO),
    same!(Ec2, "ec2", "DescribeNetworkInterfaces", RO),
    same!(Ec2, "ec2", "DescribeRouteTables", RO),
    same!(Ec2, "ec2", "DescribeInternetGateways", RO),
    same!(Ec2, "ec2", "DescribeVolumes", RO),
    same!(Ec2, "ec2", "DescribeSnapshots", RO),
    same!(Ec2, "ec2", "DescribeAddresses", RO),
    same!(Ec2, "ec2", "DescribeVpcEndpoints", RO),
    same!(Ec2, "ec2", "DescribeVpcPeeringConnections", RO),
    same!(Ec2, "ec2", "DescribeVpnConnections", RO),
    same!(Ec2, "ec2", "DescribeClientVpnEndpoints", RO),
    same!(Ec2, "ec2", "DescribeTransitGateways", RO),
    same!(Ec2, "ec2", "DescribeFlowLogs", RO),
    same!(Ec2, "ec2", "DescribeVpcEndpointServices", RO),
    // Created VPCs, subnets and security groups (ec2_vpc.rs).
    same!(Ec2, "ec2", "CreateVpc", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "DeleteVpc", RW),
    same!(Ec2, "ec2", "CreateSubnet", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "DeleteSubnet", RW),
    same!(Ec2, "ec2", "CreateSecurityGroup", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "DeleteSecurityGroup", RW),
    same!(Ec2, "ec2", "GetEbsEncryptionByDefault", RO),
    same!(Ec2, "ec2", "GetInstanceMetadataDefaults", RO),
    same!(Ec2, "ec2", "GetSnapshotBlockPublicAccessState", RO),
    same!(Ec2, "ec2", "GetImageBlockPublicAccessState", RO),
    // Key pairs, images and launch templates (ec2_launch.rs).
    same!(Ec2, "ec2", "CreateKeyPair", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "ImportKeyPair", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "DescribeKeyPairs", RO),
    same!(Ec2, "ec2", "DeleteKeyPair", RW),
    same!(Ec2, "ec2", "DescribeImages", RO),
    same!(Ec2, "ec2", "RegisterImage", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "DeregisterImage", RW),
    same!(Ec2, "ec2", "CreateLaunchTemplate", RW, ["ec2:CreateTags"]),
    same!(Ec2, "ec2", "CreateLaunchTemplateVersion", RW),
    same!(Ec2, "ec2", "ModifyLaunchTemplate", RW),
    same!(Ec2, "ec2", "DescribeLaunchTemplates", RO),
    same!(Ec2, "ec2", "DescribeLaunchTemplateVersions", RO),
    same!(Ec2, "ec2", "DeleteLaunchTemplate", RW),
    same!(Ec2, "ec2", "DeleteLaunchTemplateVersions", RW),
    same!(Ec2, "ec2", "GetLaunchTemplateData", RO),
];

/// An S3 row: its operation name and the action it needs.
macro_rules! s3 {
    ($name:literal, $action:literal, $ro:expr, $data:expr) => {
        OpDef {
            protocol: Protocol::S3,
            name: $name,
            actions: &[$action],
            conditional: &[],
            versioned: &[],
            read_only: $ro,
            data_event: $data,
        }
    };
    ($name:literal, $action:literal, $ro:expr, $data:expr, [$($c:literal),*]) => {
        OpDef {
            protocol: Protocol::S3,
            name: $name,
            actions: &[$action],
            conditional: &[$($c),*],
            versioned: &[],
            read_only: $ro,
            data_event: $data,
        }
    };
}

// An S3 row whose call names an object version (`?versionId=`) decides
// `$version` instead of `$action`.
macro_rules! s3v {
    ($name:literal, $action:literal, $version:literal, $ro:expr) => {
        OpDef {
            protocol: Protocol::S3,
            name: $name,
            actions: &[$action],
            conditional: &[],
            versioned: &[$version],
            read_only: $ro,
            data_event: true,
        }
    };
}

const DATA: bool = true;
const MGMT: bool = false;

/// S3. Several operations share an action (every upload step is
/// `s3:PutObject`, HeadBucket is `s3:ListBucket`).
pub static S3: &[OpDef] = &[
    s3!("ListBuckets", "s3:ListAllMyBuckets", RO, MGMT),
    s3!(
        "CreateBucket",
        "s3:CreateBucket",
        RW,
        MGMT,
        ["s3:PutBucketOwnershipControls", "s3:PutBucketAcl"]
    ),
    s3!("HeadBucket", "s3:ListBucket", RO, MGMT),
    s3!("DeleteBucket", "s3:DeleteBucket", RW, MGMT),
    s3!("GetBucketLocation", "s3:GetBucketLocation", RO, MGMT),
    s3!("GetBucketPolicy", "s3:GetBucketPolicy", RO, MGMT),
    s3!("PutBucketPolicy", "s3:PutBucketPolicy", RW, MGMT),
    s3!("DeleteBucketPolicy", "s3:DeleteBucketPolicy", RW, MGMT),
    s3!("GetBucketAcl", "s3:GetBucketAcl", RO, MGMT),
    s3!("GetBucketVersioning", "s3:GetBucketVersioning", RO, MGMT),
    s3!("PutBucketVersioning", "s3:PutBucketVersioning", RW, MGMT),
    s3!(
        "GetBucketLifecycleConfiguration",
        "s3:GetLifecycleConfiguration",
        RO,
        MGMT
    ),
    s3!(
        "PutBucketLifecycleConfiguration",
        "s3:PutLifecycleConfiguration",
        RW,
        MGMT
    ),
    // AWS authorizes DeleteBucketLifecycle as s3:PutLifecycleConfiguration.
    s3!(
        "DeleteBucketLifecycle",
        "s3:PutLifecycleConfiguration",
        RW,
        MGMT
    ),
    s3v!(
        "GetObjectAttributes",
        "s3:GetObjectAttributes",
        "s3:GetObjectVersionAttributes",
        RO
    ),
    s3!(
        "GetBucketEncryption",
        "s3:GetEncryptionConfiguration",
        RO,
        MGMT
    ),
    s3!(
        "GetBucketRequestPayment",
        "s3:GetBucketRequestPayment",
        RO,
        MGMT
    ),
    s3!("ListObjects", "s3:ListBucket", RO, DATA),
    s3!("ListObjectsV2", "s3:ListBucket", RO, DATA),
    s3!("ListObjectVersions", "s3:ListBucketVersions", RO, DATA),
    s3!(
        "ListMultipartUploads",
        "s3:ListBucketMultipartUploads",
        RO,
        DATA
    ),
    s3v!("GetObject", "s3:GetObject", "s3:GetObjectVersion", RO),
    s3v!("HeadObject", "s3:GetObject", "s3:GetObjectVersion", RO),
    s3v!(
        "GetObjectAcl",
        "s3:GetObjectAcl",
        "s3:GetObjectVersionAcl",
        RO
    ),
    s3v!(
        "GetObjectTagging",
        "s3:GetObjectTagging",
        "s3:GetObjectVersionTagging",
        RO
    ),
    s3v!(
        "PutObjectTagging",
        "s3:PutObjectTagging",
        "s3:PutObjectVersionTagging",
        RW
    ),
    s3v!(
        "DeleteObjectTagging",
        "s3:DeleteObjectTagging",
        "s3:DeleteObjectVersionTagging",
        RW
    ),
    s3!("GetBucketTagging", "s3:GetBucketTagging", RO, MGMT),
    s3!("PutBucketTagging", "s3:PutBucketTagging", RW, MGMT),
    // AWS authorizes DeleteBucketTagging as s3:PutBucketTagging.
    s3!("DeleteBucketTagging", "s3:PutBucketTagging", RW, MGMT),
    // Bucket settings (s3_settings.rs). A Delete… of a setting is
    // authorized as its Put…, as AWS does, except DeleteBucketWebsite.
    s3!("GetBucketCors", "s3:GetBucketCORS", RO, MGMT),
    s3!("PutBucketCors", "s3:PutBucketCORS", RW, MGMT),
    s3!("DeleteBucketCors", "s3:PutBucketCORS", RW, MGMT),
    s3!(
        "PutBucketEncryption",
        "s3:PutEncryptionConfiguration",
        RW,
        MGMT
    ),
    s3!(
        "DeleteBucketEncryption",
        "s3:PutEncryptionConfiguration",
        RW,
        MGMT
    ),
    s3!(
        "GetPublicAccessBlock",
        "s3:GetBucketPublicAccessBlock",
        RO,
        MGMT
    ),
    s3!(
        "PutPublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        RW,
        MGMT
    ),
    s3!(
        "DeletePublicAccessBlock",
        "s3:PutBucketPublicAccessBlock",
        RW,
        MGMT
    ),
    s3!(
        "GetBucketPolicyStatus",
        "s3:GetBucketPolicyStatus",
        RO,
        MGMT
    ),
    s3!(
        "GetBucketOwnershipControls",
        "s3:GetBucketOwnershipControls",
        RO,
        MGMT
    ),
    s3!(
        "PutBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
        RW,
        MGMT
    ),
    s3!(
        "DeleteBucketOwnershipControls",
        "s3:PutBucketOwnershipControls",
        RW,
        MGMT
    ),
    s3!("PutBucketAcl", "s3:PutBucketAcl", RW, MGMT),
    s3!("PutObjectAcl", "s3:PutObjectAcl", RW, DATA),
    s3!("GetBucketWebsite", "s3:GetBucketWebsite", RO, MGMT),
    s3!("PutBucketWebsite", "s3:PutBucketWebsite", RW, MGMT),
    s3!("DeleteBucketWebsite", "s3:DeleteBucketWebsite", RW, MGMT),
    s3!("GetBucketLogging", "s3:GetBucketLogging", RO, MGMT),
    s3!("PutBucketLogging", "s3:PutBucketLogging", RW, MGMT),
    s3!(
        "GetBucketNotificationConfiguration",
        "s3:GetBucketNotification",
        RO,
        MGMT
    ),
    s3!(
        "PutBucketNotificationConfiguration",
        "s3:PutBucketNotification",
        RW,
        MGMT
    ),
    s3!("PutObject", "s3:PutObject", RW, DATA, ["s3:PutObjectAcl"]),
    s3!(
        "CopyObject",
        "s3:PutObject",
        RW,
        DATA,
        ["s3:GetObject", "s3:GetObjectVersion", "s3:PutObjectAcl"]
    ),
    s3v!(
        "DeleteObject",
        "s3:DeleteObject",
        "s3:DeleteObjectVersion",
        RW
    ),
    s3!(
        "DeleteObjects",
        "s3:DeleteObject",
        RW,
        DATA,
        ["s3:DeleteObjectVersion"]
    ),
    s3!(
        "CreateMultipartUpload",
        "s3:PutObject",
        RW,
        DATA,
        ["s3:PutObjectAcl"]
    ),
    s3!("UploadPart", "s3:PutObject", RW, DATA),
    s3!(
        "UploadPartCopy",
        "s3:PutObject",
        RW,
        DATA,
        ["s3:GetObject", "s3:GetObjectVersion"]
    ),
    s3!("CompleteMultipartUpload", "s3:PutObject", RW, DATA),
    s3!("AbortMultipartUpload", "s3:AbortMultipartUpload", RW, DATA),
    s3!("ListParts", "s3:ListMultipartUploadParts", RO, DATA),
];

/// CloudTrail.
pub static CLOUDTRAIL: &[OpDef] = &[
    same!(CloudTrail, "cloudtrail", "LookupEvents", RO),
    same!(
        CloudTrail,
        "cloudtrail",
        "CreateTrail",
        RW,
        ["cloudtrail:AddTags"]
    ),
    same!(CloudTrail, "cloudtrail", "UpdateTrail", RW),
    same!(CloudTrail, "cloudtrail", "DeleteTrail", RW),
    same!(CloudTrail, "cloudtrail", "DescribeTrails", RO),
    same!(CloudTrail, "cloudtrail", "GetTrail", RO),
    same!(CloudTrail, "cloudtrail", "GetTrailStatus", RO),
    same!(CloudTrail, "cloudtrail", "ListTrails", RO),
    same!(CloudTrail, "cloudtrail", "StartLogging", RW),
    same!(CloudTrail, "cloudtrail", "StopLogging", RW),
    same!(CloudTrail, "cloudtrail", "PutEventSelectors", RW),
    same!(CloudTrail, "cloudtrail", "GetEventSelectors", RO),
    same!(CloudTrail, "cloudtrail", "AddTags", RW),
    same!(CloudTrail, "cloudtrail", "RemoveTags", RW),
    same!(CloudTrail, "cloudtrail", "ListTags", RO),
    same!(CloudTrail, "cloudtrail", "ListPublicKeys", RO),
    same!(CloudTrail, "cloudtrail", "GetInsightSelectors", RO),
    same!(CloudTrail, "cloudtrail", "ListEventDataStores", RO),
    same!(CloudTrail, "cloudtrail", "ListChannels", RO),
];

/// Organizations: what a standalone account (in no organization) answers.
pub static ORGANIZATIONS: &[OpDef] = &[
    same!(Organizations, "organizations", "DescribeOrganization", RO),
    same!(Organizations, "organizations", "ListAccounts", RO),
    same!(Organizations, "organizations", "ListRoots", RO),
    same!(Organizations, "organizations", "ListPolicies", RO),
    same!(
        Organizations,
        "organizations",
        "ListDelegatedAdministrators",
        RO
    ),
    same!(Organizations, "organizations", "DescribeAccount", RO),
];

/// Security Hub: keycard's governance findings in ASFF.
pub static SECURITYHUB: &[OpDef] = &[
    same!(SecurityHub, "securityhub", "DescribeHub", RO),
    same!(SecurityHub, "securityhub", "GetFindings", RO),
    same!(SecurityHub, "securityhub", "BatchUpdateFindings", RW),
];

/// GuardDuty: instance credentials used away from their instance.
pub static GUARDDUTY: &[OpDef] = &[
    same!(GuardDuty, "guardduty", "ListDetectors", RO),
    same!(GuardDuty, "guardduty", "GetDetector", RO),
    same!(GuardDuty, "guardduty", "ListFindings", RO),
    same!(GuardDuty, "guardduty", "GetFindings", RO),
];

/// IAM Access Analyzer: policy validation and policy generation.
pub static ACCESS_ANALYZER: &[OpDef] = &[
    same!(AccessAnalyzer, "access-analyzer", "ValidatePolicy", RO),
    same!(
        AccessAnalyzer,
        "access-analyzer",
        "StartPolicyGeneration",
        RW
    ),
    same!(AccessAnalyzer, "access-analyzer", "GetGeneratedPolicy", RO),
    same!(
        AccessAnalyzer,
        "access-analyzer",
        "ListPolicyGenerations",
        RO
    ),
    same!(
        AccessAnalyzer,
        "access-analyzer",
        "CancelPolicyGeneration",
        RW
    ),
];

/// Every table, for `keycard operations` and the tests that walk them.
pub fn all() -> impl Iterator<Item = &'static OpDef> {
    IAM.iter()
        .chain(STS)
        .chain(EC2)
        .chain(S3)
        .chain(CLOUDTRAIL)
        .chain(ORGANIZATIONS)
        .chain(SECURITYHUB)
        .chain(GUARDDUTY)
        .chain(ACCESS_ANALYZER)
}

/// The table of a protocol.
pub fn table(p: Protocol) -> &'static [OpDef] {
    match p {
        Protocol::Iam => IAM,
        Protocol::Sts => STS,
        Protocol::Ec2 => EC2,
        Protocol::S3 => S3,
        Protocol::CloudTrail => CLOUDTRAIL,
        Protocol::Organizations => ORGANIZATIONS,
        Protocol::SecurityHub => SECURITYHUB,
        Protocol::GuardDuty => GUARDDUTY,
        Protocol::AccessAnalyzer => ACCESS_ANALYZER,
        Protocol::Other(_) => &[],
    }
}

/// Look an operation up by name.
pub fn find(p: Protocol, name: &str) -> Option<&'static OpDef> {
    table(p).iter().find(|o| o.name == name)
}

/// Whether a successful call decided every action its row requires; the
/// first one it did not, otherwise.
pub fn missing_action<'a>(
    op: &'static OpDef,
    names_version: bool,
    decided: impl Iterator<Item = &'a str> + Clone,
) -> Option<&'static str> {
    op.required(names_version)
        .iter()
        .copied()
        .find(|a| !decided.clone().any(|d| d.eq_ignore_ascii_case(a)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_request_needs_the_version_action() {
        let op = find(Protocol::S3, "GetObject").expect("row");
        assert_eq!(op.action(false), "s3:GetObject");
        assert_eq!(op.action(true), "s3:GetObjectVersion");
        let decided = ["s3:GetObject"];
        assert_eq!(
            missing_action(op, true, decided.iter().copied()),
            Some("s3:GetObjectVersion")
        );
        let list = find(Protocol::S3, "ListObjects").expect("row");
        assert_eq!(list.action(true), "s3:ListBucket");
    }

    #[test]
    fn names_are_unique_per_service() {
        for p in [
            Protocol::Iam,
            Protocol::Sts,
            Protocol::Ec2,
            Protocol::S3,
            Protocol::CloudTrail,
        ] {
            let t = table(p);
            for (i, a) in t.iter().enumerate() {
                assert!(
                    t.iter().skip(i + 1).all(|b| b.name != a.name),
                    "{} twice",
                    a.name
                );
                assert_eq!(a.protocol, p);
            }
        }
    }

    #[test]
    fn only_sts_identity_calls_need_no_permission() {
        let free: Vec<&str> = all()
            .filter(|o| o.actions.is_empty())
            .map(|o| o.name)
            .collect();
        assert_eq!(free, ["GetCallerIdentity", "GetSessionToken"]);
    }

    #[test]
    fn the_guard_names_the_undecided_action() {
        let op = find(Protocol::Ec2, "StopInstances").expect("row");
        assert_eq!(
            missing_action(op, false, [].iter().copied()),
            Some("ec2:StopInstances")
        );
        assert_eq!(
            missing_action(
                op,
                false,
                ["iam:PassRole", "ec2:stopinstances"].iter().copied()
            ),
            None
        );
    }
}
