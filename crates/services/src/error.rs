//! Every error a keycard service can return, and the one place that maps it
//! to AWS's error code and HTTP status.

use keycard_policy::PolicyError;
use keycard_store::StoreError;

/// A service error: the variant decides the AWS code and status, the
/// message is AWS's wording for the case.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    NoSuchEntity(String),
    /// CloudTrail's trail-management exceptions.
    #[error("{1}")]
    Trail(TrailError, String),
    #[error("{0}")]
    EntityAlreadyExists(String),
    #[error("{0}")]
    DeleteConflict(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("{0}")]
    MalformedPolicyDocument(String),
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    PasswordPolicyViolation(String),
    #[error("{0}")]
    InvalidUserType(String),
    #[error("{0}")]
    InvalidAuthenticationCode(String),
    #[error("{0}")]
    ReportNotPresent(String),
    #[error("{0}")]
    ReportExpired(String),
    #[error("{0}")]
    EntityTemporarilyUnmodifiable(String),
    // IAM credentials and certificates (iam_creds.rs)
    #[error("{0}")]
    MalformedCertificate(String),
    #[error("{0}")]
    KeyPairMismatch(String),
    #[error("{0}")]
    DuplicateCertificate(String),
    #[error("{0}")]
    InvalidPublicKey(String),
    #[error("{0}")]
    UnrecognizedPublicKeyEncoding(String),
    #[error("{0}")]
    DuplicateSshPublicKey(String),
    #[error("{0}")]
    ServiceNotSupported(String),
    #[error("{0}")]
    UnmodifiableEntity(String),
    #[error("{0}")]
    ValidationError(String),
    #[error("{0}")]
    MissingParameter(String),
    #[error("{0}")]
    InvalidParameterValue(String),
    #[error("{0}")]
    InvalidParameterCombination(String),
    #[error("{0}")]
    AccessDenied(String),
    /// EC2's name for a policy denial.
    #[error("{0}")]
    UnauthorizedOperation(String),
    #[error("{0}")]
    DryRunOperation(String),
    #[error("{0}")]
    InvalidClientTokenId(String),
    #[error("{0}")]
    SignatureDoesNotMatch(String),
    #[error("{0}")]
    IncompleteSignature(String),
    #[error("{0}")]
    MissingAuthenticationToken(String),
    #[error("{0}")]
    ExpiredToken(String),
    #[error("{0}")]
    RequestTimeTooSkewed(String),
    #[error("{0}")]
    RequestExpired(String),
    #[error("{0}")]
    AuthorizationHeaderMalformed(String),
    #[error("{0}")]
    AuthorizationQueryParametersError(String),
    #[error("{0}")]
    IncompleteBody(String),
    #[error("{0}")]
    MissingAction(String),
    #[error("{0}")]
    InvalidQueryParameter(String),
    #[error("{0}")]
    InvalidAction(String),
    #[error("{0}")]
    PackedPolicyTooLarge(String),
    #[error("{0}")]
    InvalidAuthorizationMessage(String),
    #[error("{0}")]
    RegionDisabled(String),
    /// An error the service model names, as (code, HTTP status, message):
    /// the federation errors (`InvalidIdentityToken`, `FeatureDisabled`, …).
    #[error("{2}")]
    Modeled(&'static str, u16, String),
    // S3
    #[error("{0}")]
    NoSuchBucket(String),
    #[error("{0}")]
    NoSuchKey(String),
    #[error("{0}")]
    NoSuchUpload(String),
    #[error("{0}")]
    NoSuchBucketPolicy(String),
    #[error("{0}")]
    BucketAlreadyExists(String),
    #[error("{0}")]
    BucketAlreadyOwnedByYou(String),
    #[error("{0}")]
    BucketNotEmpty(String),
    #[error("{0}")]
    InvalidBucketName(String),
    #[error("{0}")]
    InvalidRange(String),
    #[error("{0}")]
    InvalidPart(String),
    #[error("{0}")]
    InvalidPartOrder(String),
    #[error("{0}")]
    EntityTooLarge(String),
    #[error("{0}")]
    InvalidTag(String),
    #[error("{0}")]
    NoSuchTagSet(String),
    #[error("{0}")]
    EntityTooSmall(String),
    #[error("{0}")]
    MalformedXML(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    InvalidRequest(String),
    #[error("{0}")]
    NotImplemented(String),
    #[error("{0}")]
    PreconditionFailed(String),
    #[error("{0}")]
    NotModified(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    BadDigest(String),
    #[error("{0}")]
    XAmzContentSHA256Mismatch(String),
    // EC2
    #[error("{0}")]
    InvalidInstanceIdNotFound(String),
    #[error("{0}")]
    InvalidInstanceIdMalformed(String),
    #[error("{0}")]
    IncorrectState(String),
    #[error("{0}")]
    IncorrectInstanceState(String),
    #[error("{0}")]
    InvalidAssociationIdNotFound(String),
    #[error("{0}")]
    InvalidAmiIdMalformed(String),
    #[error("{0}")]
    InstanceLimitExceeded(String),
    #[error("{0}")]
    InvalidIpAddressInUse(String),
    // EC2 launch path (key pairs, images, launch templates)
    #[error("{0}")]
    InvalidKeyFormat(String),
    #[error("{0}")]
    InvalidKeyPairDuplicate(String),
    #[error("{0}")]
    InvalidKeyPairNotFound(String),
    #[error("{0}")]
    InvalidLaunchTemplateNameAlreadyExists(String),
    #[error("{0}")]
    InvalidLaunchTemplateNameMalformed(String),
    #[error("{0}")]
    InvalidLaunchTemplateIdMalformed(String),
    #[error("{0}")]
    InvalidLaunchTemplateIdVersionNotFound(String),
    #[error("{0}")]
    InvalidAmiNameDuplicate(String),
    #[error("{0}")]
    InvalidAmiNameMalformed(String),
    #[error("{0}")]
    InvalidAmiIdUnavailable(String),
    // Organizations / Security Hub
    #[error("{0}")]
    OrganizationsNotInUse(String),
    #[error("{0}")]
    OrganizationNotFound(String),
    #[error("{0}")]
    ResourceNotFound(String),
    /// GuardDuty's (REST-JSON) malformed-input error.
    #[error("{0}")]
    BadRequest(String),
    // EC2 network (crates/services/src/vpc.rs)
    #[error("{0}")]
    InsufficientFreeAddressesInSubnet(String),
    #[error("{0}")]
    InvalidVpcIdNotFound(String),
    #[error("{0}")]
    InvalidSubnetIdNotFound(String),
    #[error("{0}")]
    InvalidGroupNotFound(String),
    #[error("{0}")]
    InvalidGroupIdMalformed(String),
    #[error("{0}")]
    InvalidNetworkAclIdNotFound(String),
    #[error("{0}")]
    InvalidRouteTableIdNotFound(String),
    #[error("{0}")]
    InvalidInternetGatewayIdNotFound(String),
    #[error("{0}")]
    InvalidNetworkInterfaceIdNotFound(String),
    #[error("{0}")]
    InvalidLaunchTemplateIdNotFound(String),
    #[error("{0}")]
    InvalidLaunchTemplateNameNotFound(String),
    #[error("{0}")]
    InvalidVolumeNotFound(String),
    #[error("{0}")]
    InvalidSnapshotNotFound(String),
    #[error("{0}")]
    InvalidAmiIdNotFound(String),
    #[error("{0}")]
    InvalidAddressNotFound(String),
    #[error("{0}")]
    InvalidAllocationIdNotFound(String),
    #[error("{0}")]
    InvalidVpcEndpointIdNotFound(String),
    #[error("{0}")]
    InvalidVpcPeeringConnectionIdNotFound(String),
    #[error("{0}")]
    InvalidVpnConnectionIdNotFound(String),
    #[error("{0}")]
    InvalidClientVpnEndpointIdNotFound(String),
    #[error("{0}")]
    InvalidTransitGatewayIdNotFound(String),
    #[error("{0}")]
    InvalidVpcIdMalformed(String),
    #[error("{0}")]
    InvalidSubnetIdMalformed(String),
    #[error("{0}")]
    InvalidVpcRange(String),
    #[error("{0}")]
    InvalidSubnetRange(String),
    #[error("{0}")]
    InvalidSubnetConflict(String),
    #[error("{0}")]
    InvalidGroupDuplicate(String),
    #[error("{0}")]
    InvalidGroupReserved(String),
    #[error("{0}")]
    InvalidParameter(String),
    #[error("{0}")]
    DependencyViolation(String),
    #[error("{0}")]
    CannotDelete(String),
    #[error("{0}")]
    UnsupportedOperation(String),
    // Server side
    #[error("{0}")]
    ServiceUnavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// CloudTrail's exceptions for trails (all 400: the client's to fix).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailError {
    TrailNotFound,
    TrailAlreadyExists,
    InvalidTrailName,
    CloudTrailArnInvalid,
    MaximumNumberOfTrailsExceeded,
    S3BucketDoesNotExist,
    InsufficientS3BucketPolicy,
    InvalidS3BucketName,
    InvalidS3Prefix,
    InvalidEventSelectors,
    InvalidParameter,
    InvalidParameterCombination,
    InvalidTagParameter,
    TagsLimitExceeded,
    ResourceNotFound,
    OrganizationsNotInUse,
    KmsKeyNotFound,
    InvalidCloudWatchLogsLogGroupArn,
    InsufficientSnsTopicPolicy,
    InvalidTimeRange,
    InvalidToken,
    InsightNotEnabled,
    InvalidNextToken,
    InvalidMaxResults,
}

impl TrailError {
    pub fn code(self) -> &'static str {
        use TrailError::*;
        match self {
            TrailNotFound => "TrailNotFoundException",
            TrailAlreadyExists => "TrailAlreadyExistsException",
            InvalidTrailName => "InvalidTrailNameException",
            CloudTrailArnInvalid => "CloudTrailARNInvalidException",
            MaximumNumberOfTrailsExceeded => "MaximumNumberOfTrailsExceededException",
            S3BucketDoesNotExist => "S3BucketDoesNotExistException",
            InsufficientS3BucketPolicy => "InsufficientS3BucketPolicyException",
            InvalidS3BucketName => "InvalidS3BucketNameException",
            InvalidS3Prefix => "InvalidS3PrefixException",
            InvalidEventSelectors => "InvalidEventSelectorsException",
            InvalidParameter => "InvalidParameterException",
            InvalidParameterCombination => "InvalidParameterCombinationException",
            InvalidTagParameter => "InvalidTagParameterException",
            TagsLimitExceeded => "TagsLimitExceededException",
            ResourceNotFound => "ResourceNotFoundException",
            OrganizationsNotInUse => "OrganizationsNotInUseException",
            KmsKeyNotFound => "KmsKeyNotFoundException",
            InvalidCloudWatchLogsLogGroupArn => "InvalidCloudWatchLogsLogGroupArnException",
            InsufficientSnsTopicPolicy => "InsufficientSnsTopicPolicyException",
            InvalidTimeRange => "InvalidTimeRangeException",
            InvalidToken => "InvalidTokenException",
            InsightNotEnabled => "InsightNotEnabledException",
            InvalidNextToken => "InvalidNextTokenException",
            InvalidMaxResults => "InvalidMaxResultsException",
        }
    }
}

impl ServiceError {
    /// AWS's error code.
    pub fn code(&self) -> &'static str {
        use ServiceError::*;
        match self {
            NoSuchEntity(_) => "NoSuchEntity",
            Trail(k, _) => k.code(),
            EntityAlreadyExists(_) => "EntityAlreadyExists",
            DeleteConflict(_) => "DeleteConflict",
            LimitExceeded(_) => "LimitExceeded",
            MalformedPolicyDocument(_) => "MalformedPolicyDocument",
            InvalidInput(_) => "InvalidInput",
            PasswordPolicyViolation(_) => "PasswordPolicyViolation",
            InvalidUserType(_) => "InvalidUserType",
            InvalidAuthenticationCode(_) => "InvalidAuthenticationCode",
            ReportNotPresent(_) => "ReportNotPresent",
            ReportExpired(_) => "ReportExpired",
            EntityTemporarilyUnmodifiable(_) => "EntityTemporarilyUnmodifiable",
            MalformedCertificate(_) => "MalformedCertificate",
            KeyPairMismatch(_) => "KeyPairMismatch",
            DuplicateCertificate(_) => "DuplicateCertificate",
            InvalidPublicKey(_) => "InvalidPublicKey",
            UnrecognizedPublicKeyEncoding(_) => "UnrecognizedPublicKeyEncoding",
            DuplicateSshPublicKey(_) => "DuplicateSSHPublicKey",
            ServiceNotSupported(_) => "NotSupportedService",
            UnmodifiableEntity(_) => "UnmodifiableEntity",
            ValidationError(_) => "ValidationError",
            MissingParameter(_) => "MissingParameter",
            InvalidParameterValue(_) => "InvalidParameterValue",
            InvalidParameterCombination(_) => "InvalidParameterCombination",
            AccessDenied(_) => "AccessDenied",
            UnauthorizedOperation(_) => "UnauthorizedOperation",
            DryRunOperation(_) => "DryRunOperation",
            InvalidClientTokenId(_) => "InvalidClientTokenId",
            SignatureDoesNotMatch(_) => "SignatureDoesNotMatch",
            IncompleteSignature(_) => "IncompleteSignature",
            MissingAuthenticationToken(_) => "MissingAuthenticationToken",
            ExpiredToken(_) => "ExpiredToken",
            RequestTimeTooSkewed(_) => "RequestTimeTooSkewed",
            RequestExpired(_) => "RequestExpired",
            AuthorizationHeaderMalformed(_) => "AuthorizationHeaderMalformed",
            AuthorizationQueryParametersError(_) => "AuthorizationQueryParametersError",
            IncompleteBody(_) => "IncompleteBody",
            MissingAction(_) => "MissingAction",
            InvalidQueryParameter(_) => "InvalidQueryParameter",
            InvalidAction(_) => "InvalidAction",
            PackedPolicyTooLarge(_) => "PackedPolicyTooLarge",
            InvalidAuthorizationMessage(_) => "InvalidAuthorizationMessageException",
            RegionDisabled(_) => "RegionDisabledException",
            Modeled(code, _, _) => code,
            NoSuchBucket(_) => "NoSuchBucket",
            NoSuchKey(_) => "NoSuchKey",
            NoSuchUpload(_) => "NoSuchUpload",
            NoSuchBucketPolicy(_) => "NoSuchBucketPolicy",
            BucketAlreadyExists(_) => "BucketAlreadyExists",
            BucketAlreadyOwnedByYou(_) => "BucketAlreadyOwnedByYou",
            BucketNotEmpty(_) => "BucketNotEmpty",
            InvalidBucketName(_) => "InvalidBucketName",
            InvalidRange(_) => "InvalidRange",
            InvalidPart(_) => "InvalidPart",
            InvalidPartOrder(_) => "InvalidPartOrder",
            EntityTooLarge(_) => "EntityTooLarge",
            InvalidTag(_) => "InvalidTag",
            NoSuchTagSet(_) => "NoSuchTagSet",
            EntityTooSmall(_) => "EntityTooSmall",
            MalformedXML(_) => "MalformedXML",
            InvalidArgument(_) => "InvalidArgument",
            InvalidRequest(_) => "InvalidRequest",
            NotImplemented(_) => "NotImplemented",
            PreconditionFailed(_) => "PreconditionFailed",
            NotModified(_) => "NotModified",
            MethodNotAllowed(_) => "MethodNotAllowed",
            BadDigest(_) => "BadDigest",
            XAmzContentSHA256Mismatch(_) => "XAmzContentSHA256Mismatch",
            InvalidInstanceIdNotFound(_) => "InvalidInstanceID.NotFound",
            InvalidInstanceIdMalformed(_) => "InvalidInstanceID.Malformed",
            IncorrectState(_) => "IncorrectState",
            IncorrectInstanceState(_) => "IncorrectInstanceState",
            InvalidAssociationIdNotFound(_) => "InvalidAssociationID.NotFound",
            InvalidAmiIdMalformed(_) => "InvalidAMIID.Malformed",
            InstanceLimitExceeded(_) => "InstanceLimitExceeded",
            InvalidIpAddressInUse(_) => "InvalidIPAddress.InUse",
            InvalidKeyFormat(_) => "InvalidKey.Format",
            InvalidKeyPairDuplicate(_) => "InvalidKeyPair.Duplicate",
            InvalidKeyPairNotFound(_) => "InvalidKeyPair.NotFound",
            InvalidLaunchTemplateNameAlreadyExists(_) => {
                "InvalidLaunchTemplateName.AlreadyExistsException"
            }
            InvalidLaunchTemplateNameMalformed(_) => "InvalidLaunchTemplateName.MalformedException",
            InvalidLaunchTemplateIdMalformed(_) => "InvalidLaunchTemplateId.Malformed",
            InvalidLaunchTemplateIdVersionNotFound(_) => "InvalidLaunchTemplateId.VersionNotFound",
            InvalidAmiNameDuplicate(_) => "InvalidAMIName.Duplicate",
            InvalidAmiNameMalformed(_) => "InvalidAMIName.Malformed",
            InvalidAmiIdUnavailable(_) => "InvalidAMIID.Unavailable",
            OrganizationsNotInUse(_) => "AWSOrganizationsNotInUseException",
            OrganizationNotFound(_) => "OrganizationNotFoundException",
            ResourceNotFound(_) => "ResourceNotFoundException",
            BadRequest(_) => "BadRequestException",
            InsufficientFreeAddressesInSubnet(_) => "InsufficientFreeAddressesInSubnet",
            InvalidVpcIdNotFound(_) => "InvalidVpcID.NotFound",
            InvalidSubnetIdNotFound(_) => "InvalidSubnetID.NotFound",
            InvalidGroupNotFound(_) => "InvalidGroup.NotFound",
            InvalidGroupIdMalformed(_) => "InvalidGroupId.Malformed",
            InvalidNetworkAclIdNotFound(_) => "InvalidNetworkAclID.NotFound",
            InvalidRouteTableIdNotFound(_) => "InvalidRouteTableID.NotFound",
            InvalidInternetGatewayIdNotFound(_) => "InvalidInternetGatewayID.NotFound",
            InvalidNetworkInterfaceIdNotFound(_) => "InvalidNetworkInterfaceID.NotFound",
            InvalidLaunchTemplateIdNotFound(_) => "InvalidLaunchTemplateId.NotFound",
            InvalidLaunchTemplateNameNotFound(_) => "InvalidLaunchTemplateName.NotFoundException",
            InvalidVolumeNotFound(_) => "InvalidVolume.NotFound",
            InvalidSnapshotNotFound(_) => "InvalidSnapshot.NotFound",
            InvalidAmiIdNotFound(_) => "InvalidAMIID.NotFound",
            InvalidAddressNotFound(_) => "InvalidAddress.NotFound",
            InvalidAllocationIdNotFound(_) => "InvalidAllocationID.NotFound",
            InvalidVpcEndpointIdNotFound(_) => "InvalidVpcEndpointId.NotFound",
            InvalidVpcPeeringConnectionIdNotFound(_) => "InvalidVpcPeeringConnectionID.NotFound",
            InvalidVpnConnectionIdNotFound(_) => "InvalidVpnConnectionID.NotFound",
            InvalidClientVpnEndpointIdNotFound(_) => "InvalidClientVpnEndpointId.NotFound",
            InvalidTransitGatewayIdNotFound(_) => "InvalidTransitGatewayID.NotFound",
            InvalidVpcIdMalformed(_) => "InvalidVpcID.Malformed",
            InvalidSubnetIdMalformed(_) => "InvalidSubnetID.Malformed",
            InvalidVpcRange(_) => "InvalidVpc.Range",
            InvalidSubnetRange(_) => "InvalidSubnet.Range",
            InvalidSubnetConflict(_) => "InvalidSubnet.Conflict",
            InvalidGroupDuplicate(_) => "InvalidGroup.Duplicate",
            InvalidGroupReserved(_) => "InvalidGroup.Reserved",
            InvalidParameter(_) => "InvalidParameter",
            DependencyViolation(_) => "DependencyViolation",
            CannotDelete(_) => "CannotDelete",
            UnsupportedOperation(_) => "UnsupportedOperation",
            ServiceUnavailable(_) => "ServiceUnavailable",
            Internal(_) => "InternalFailure",
        }
    }

    /// AWS's HTTP status for the code.
    pub fn status(&self) -> u16 {
        use ServiceError::*;
        match self {
            NoSuchEntity(_)
            | NoSuchBucket(_)
            | NoSuchKey(_)
            | NoSuchUpload(_)
            | NoSuchBucketPolicy(_)
            | NoSuchTagSet(_)
            | ResourceNotFound(_)
            | ServiceNotSupported(_) => 404,
            ReportNotPresent(_) | ReportExpired(_) => 410,
            InvalidAuthenticationCode(_) => 403,
            EntityAlreadyExists(_)
            | EntityTemporarilyUnmodifiable(_)
            | DuplicateCertificate(_)
            | DeleteConflict(_)
            | LimitExceeded(_)
            | BucketAlreadyExists(_)
            | BucketAlreadyOwnedByYou(_)
            | BucketNotEmpty(_) => 409,
            AccessDenied(_)
            | InvalidClientTokenId(_)
            | SignatureDoesNotMatch(_)
            | IncompleteSignature(_)
            | MissingAuthenticationToken(_)
            | RequestTimeTooSkewed(_)
            | RegionDisabled(_)
            | ExpiredToken(_)
            | UnauthorizedOperation(_) => 403,
            DryRunOperation(_) => 412,
            InvalidRange(_) => 416,
            PreconditionFailed(_) => 412,
            NotModified(_) => 304,
            MethodNotAllowed(_) => 405,
            NotImplemented(_) => 501,
            ServiceUnavailable(_) => 503,
            Internal(_) => 500,
            Modeled(_, status, _) => *status,
            _ => 400,
        }
    }

    /// The code, status and message a protocol family puts on the wire.
    /// The per-protocol names AWS uses for the same failure (EC2's
    /// `UnauthorizedOperation` and `AuthFailure`, S3's `InvalidAccessKeyId`,
    /// CloudTrail's exception names) live here and nowhere else.
    pub fn wire(&self, w: Wire) -> WireError {
        use ServiceError::*;
        let own = |code: &'static str, status: u16| WireError {
            code,
            status,
            message: self.message(),
        };
        match (w, self) {
            (Wire::Ec2, AccessDenied(_)) => own("UnauthorizedOperation", 403),
            (Wire::Ec2, InvalidClientTokenId(_) | SignatureDoesNotMatch(_)) => WireError {
                code: "AuthFailure",
                status: 401,
                message: "AWS was not able to validate the provided access credentials".into(),
            },
            (Wire::S3, InvalidClientTokenId(_)) => WireError {
                code: "InvalidAccessKeyId",
                status: 403,
                message: "The AWS Access Key Id you provided does not exist in our records.".into(),
            },
            (Wire::S3, ExpiredToken(_)) => WireError {
                code: "ExpiredToken",
                status: 400,
                message: "The provided token has expired.".into(),
            },
            (Wire::S3, MissingAuthenticationToken(_) | IncompleteSignature(_)) => {
                own("AccessDenied", 403)
            }
            (Wire::S3, ValidationError(_) | InvalidInput(_)) => own("InvalidArgument", 400),
            (Wire::S3, MalformedPolicyDocument(_)) => own("MalformedPolicy", 400),
            (Wire::CloudTrail, ValidationError(_) | InvalidInput(_)) => {
                own("InvalidLookupAttributesException", 400)
            }
            (Wire::Json, InvalidAction(_)) => own("UnknownOperationException", 400),
            (Wire::Json, AccessDenied(_)) => own("AccessDeniedException", 403),
            (Wire::Json, InvalidInput(_)) => own("InvalidInputException", 400),
            (Wire::Json, ValidationError(_)) => own("ValidationException", 400),
            _ => own(self.code(), self.status()),
        }
    }

    /// Query-protocol error type: the client's fault or ours.    /// Query-protocol error type: the client's fault or ours.
    pub fn is_sender_fault(&self) -> bool {
        self.status() < 500
    }

    pub fn message(&self) -> String {
        self.to_string()
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store failure");
        ServiceError::Internal("We encountered an internal error. Please try again.".into())
    }
}

/// A request whose event could not be recorded is refused (fail closed).
impl From<crate::audit::AuditUnavailable> for ServiceError {
    fn from(_: crate::audit::AuditUnavailable) -> Self {
        ServiceError::ServiceUnavailable(
            "The request has failed due to a temporary failure of the server.".into(),
        )
    }
}

impl From<PolicyError> for ServiceError {
    fn from(e: PolicyError) -> Self {
        match e.code {
            keycard_policy::ErrorCode::MalformedPolicyDocument => {
                ServiceError::MalformedPolicyDocument(e.message)
            }
            keycard_policy::ErrorCode::LimitExceeded => ServiceError::LimitExceeded(e.message),
            keycard_policy::ErrorCode::InvalidInput => ServiceError::InvalidInput(e.message),
        }
    }
}

pub type Result<T> = std::result::Result<T, ServiceError>;

/// The families of error shapes AWS protocols use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// IAM, STS and other query APIs: `<ErrorResponse><Error><Type>`.
    Query,
    /// EC2's query dialect: `<Response><Errors><Error>`.
    Ec2,
    /// S3's REST-XML `<Error>`.
    S3,
    /// CloudTrail's JSON 1.1 exceptions.
    CloudTrail,
    /// Any other JSON or REST-JSON service: `__type` and `x-amzn-ErrorType`.
    Json,
}

/// An error as one protocol spells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireError {
    pub code: &'static str,
    pub status: u16,
    pub message: String,
}
