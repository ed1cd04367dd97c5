//! Console sign-in: a password (and MFA code) or root credentials become
//! an STS session of that principal, and every attempt is a `ConsoleLogin`
//! event, as CloudTrail records it.

use keycard_policy::{Principal, PrincipalKind};
use keycard_proto::secret::ct_eq;
use serde_json::json;

use crate::audit::EventInput;
use crate::auth::{Caller, CallerKind};
use crate::iam_governance::{mfa_of_user, totp, verify_password};
use crate::sts::Credentials;
use crate::{Keycard, ServiceError, now};

/// What the sign-in form submitted.
pub enum SignIn<'a> {
    User {
        account: &'a str,
        user: &'a str,
        password: &'a str,
        mfa_code: Option<&'a str>,
    },
    Root {
        account: &'a str,
        access_key_id: &'a str,
        secret: &'a str,
    },
}

/// Why a sign-in failed. The page shows one generic message for all but
/// `MfaRequired` (which only follows a correct password).
#[derive(Debug, PartialEq, Eq)]
pub enum SignInFailure {
    Failed,
    MfaRequired,
}

/// A refused attempt: the principal it named, when known, and why.
type Refusal = (Option<Box<Caller>>, SignInFailure);

/// Where the attempt came from, for its event.
pub struct Origin<'a> {
    pub source_ip: &'a str,
    pub user_agent: &'a str,
    pub region: &'a str,
}

/// A signed-in principal: the caller the session is renewed for, and its
/// current session credentials.
pub struct SignedIn {
    pub caller: Caller,
    pub credentials: Credentials,
    pub mfa: bool,
}

/// How long a console session's credentials live (the console's
/// absolute timeout; root sessions are capped at an hour and renewed).
pub const CONSOLE_SESSION_SECONDS: i64 = 12 * 3600;

impl Keycard {
    /// Check a sign-in and issue its session; the attempt is audited
    /// either way.
    pub async fn console_sign_in(
        &self,
        form: &SignIn<'_>,
        origin: &Origin<'_>,
    ) -> Result<SignedIn, SignInFailure> {
        let (account, outcome) = match form {
            SignIn::User {
                account,
                user,
                password,
                mfa_code,
            } => (
                *account,
                self.user_sign_in(account, user, password, *mfa_code).await,
            ),
            SignIn::Root {
                account,
                access_key_id,
                secret,
            } => (*account, self.root_sign_in(account, access_key_id, secret)),
        };
        let (caller, mfa) = match outcome {
            Ok(x) => x,
            Err((who, why)) => {
                if why == SignInFailure::Failed {
                    self.console_login_event(who.as_deref(), account, origin, false)
                        .await;
                }
                return Err(why);
            }
        };
        let credentials = self
            .session_token_for(&caller, Some(CONSOLE_SESSION_SECONDS), mfa)
            .map_err(|_| SignInFailure::Failed)?;
        self.console_login_event(Some(&caller), account, origin, true)
            .await;
        Ok(SignedIn {
            caller,
            credentials,
            mfa,
        })
    }

    /// Record a refused attempt the console decided without checking the
    /// credentials (a locked-out user): the same `ConsoleLogin` failure.
    pub async fn console_login_refused(
        &self,
        account: &str,
        user: Option<&str>,
        origin: &Origin<'_>,
    ) {
        let who = user.and_then(|u| {
            let st = self.state();
            st.user(account, u).map(|u| user_caller(account, u))
        });
        self.console_login_event(who.as_ref(), account, origin, false)
            .await;
    }

    /// Fresh credentials for a signed-in caller (root sessions last an
    /// hour; the console renews them within its absolute timeout).
    pub fn console_renew(&self, caller: &Caller, mfa: bool) -> Result<Credentials, ServiceError> {
        self.session_token_for(caller, Some(CONSOLE_SESSION_SECONDS), mfa)
    }

    async fn user_sign_in(
        &self,
        account: &str,
        user: &str,
        password: &str,
        mfa_code: Option<&str>,
    ) -> Result<(Caller, bool), Refusal> {
        let found = {
            let st = self.state();
            st.user(account, user).cloned().map(|u| {
                let mfa = mfa_of_user(&st, account, &u.name).cloned();
                (u, mfa)
            })
        };
        let Some((u, mfa)) = found else {
            return Err((None, SignInFailure::Failed));
        };
        let caller = user_caller(account, &u);
        let fail = |c: &Caller| Err((Some(Box::new(c.clone())), SignInFailure::Failed));
        let Some(lp) = u.login_profile.clone() else {
            return fail(&caller);
        };
        let pw = password.to_string();
        let ok = tokio::task::spawn_blocking(move || verify_password(&pw, &lp.hash))
            .await
            .unwrap_or(false);
        if !ok {
            return fail(&caller);
        }
        let Some(dev) = mfa.filter(|d| d.enabled.is_some()) else {
            return Ok((caller, false));
        };
        let Some(code) = mfa_code.filter(|c| !c.is_empty()) else {
            return Err((Some(Box::new(caller)), SignInFailure::MfaRequired));
        };
        match self.accept_mfa_code(account, &dev.serial, code).await {
            true => Ok((caller, true)),
            false => fail(&caller),
        }
    }

    /// One code from the user's device, in the current window and after
    /// the last accepted one (a code is not accepted twice).
    async fn accept_mfa_code(&self, account: &str, serial: &str, code: &str) -> bool {
        let dev = {
            let st = self.state();
            st.accounts
                .get(account)
                .and_then(|a| a.governance.mfa.get(serial).cloned())
        };
        let Some(dev) = dev else { return false };
        let Ok(seed) = self.seed_of(&dev) else {
            return false;
        };
        let Ok(cur) = u64::try_from(now() / 30) else {
            return false;
        };
        let Some(step) = (cur.saturating_sub(1)..=cur + 1)
            .find(|&s| s > dev.last_step && ct_eq(totp(&seed, s).as_bytes(), code.as_bytes()))
        else {
            return false;
        };
        self.mutate(|st| {
            let mut a = st
                .accounts
                .get(account)
                .cloned()
                .ok_or_else(|| ServiceError::NoSuchEntity(account.into()))?;
            if let Some(d) = a.governance.mfa.get_mut(serial) {
                d.last_step = step;
            }
            Ok((
                vec![crate::model::Change::Put(crate::model::Entity::Account(a))],
                (),
            ))
        })
        .await
        .is_ok()
    }

    fn root_sign_in(
        &self,
        account: &str,
        key_id: &str,
        secret: &str,
    ) -> Result<(Caller, bool), Refusal> {
        match self.credentials(key_id, None) {
            Ok((s, c))
                if matches!(c.kind, CallerKind::Root)
                    && c.account == account
                    && ct_eq(s.expose().as_bytes(), secret.as_bytes()) =>
            {
                Ok((c, false))
            }
            Ok((_, c)) if c.account == account => Err((
                Some(Box::new(Caller::root(account, ""))),
                SignInFailure::Failed,
            )),
            _ => Err((None, SignInFailure::Failed)),
        }
    }

    async fn console_login_event(
        &self,
        caller: Option<&Caller>,
        account: &str,
        origin: &Origin<'_>,
        success: bool,
    ) {
        let rid = uuid::Uuid::new_v4().to_string();
        let outcome = if success { "Success" } else { "Failure" };
        let recorded = self
            .audit
            .record(EventInput {
                caller,
                event_source: "signin.amazonaws.com",
                event_name: "ConsoleLogin",
                region: origin.region,
                source_ip: origin.source_ip,
                user_agent: origin.user_agent,
                request_parameters: serde_json::Value::Null,
                response_elements: json!({"ConsoleLogin": outcome}),
                error_code: None,
                error_message: (!success).then_some("Failed authentication"),
                request_id: &rid,
                read_only: false,
                data_event: false,
                resources: Vec::new(),
                decided: &[],
                recipient_account: account,
                instance_credentials: None,
            })
            .await;
        if recorded.is_err() {
            tracing::error!("ConsoleLogin event not recorded");
        }
    }
}

/// The caller a user's password sign-in is (no access key).
fn user_caller(account: &str, u: &crate::model::User) -> Caller {
    Caller {
        principal: Principal {
            arn: u.arn(),
            account: account.into(),
            kind: PrincipalKind::User,
        },
        account: account.into(),
        access_key_id: String::new(),
        kind: CallerKind::User {
            name: u.name.clone(),
            id: u.id.clone(),
        },
    }
}
