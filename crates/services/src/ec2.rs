//! EC2 instances and their instance-profile associations (the parts the
//! IMDS and credential checks need).

use serde::{Deserialize, Serialize};

use crate::Keycard;
use crate::error::{Result, ServiceError};
use crate::sts::Session;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProfileAssociation {
    /// `iip-assoc-…`
    pub id: String,
    pub profile_arn: String,
    pub profile_id: String,
    /// associating | associated | disassociating | disassociated
    pub state: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub account: String,
    /// pending | running | stopping | stopped | shutting-down | terminated
    pub state: String,
    #[serde(default)]
    pub profile: Option<ProfileAssociation>,
    #[serde(default)]
    pub private_ip: Option<String>,
}

impl Instance {
    pub fn is_terminated(&self) -> bool {
        self.state == "terminated"
    }
}

impl Keycard {
    /// Instance-role credentials stop working when the instance stops or
    /// terminates, or when its profile association changes.
    pub fn check_instance_session(&self, s: &Session) -> Result<()> {
        let Some(claim) = &s.claims.instance else {
            return Ok(());
        };
        let st = self.state();
        let ok = st.instances.get(&claim.id).is_some_and(|i| {
            i.state == "running"
                && i.profile
                    .as_ref()
                    .is_some_and(|a| a.id == claim.association && a.state == "associated")
        });
        if ok {
            Ok(())
        } else {
            Err(ServiceError::ExpiredToken(
                "The security token included in the request is expired".into(),
            ))
        }
    }
}
