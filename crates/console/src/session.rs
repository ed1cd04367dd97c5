//! Console sessions, held server-side: the cookie is only a random id.
//! A session ends at its idle or absolute timeout, or at sign-out.

use std::collections::HashMap;
use std::sync::Mutex;

use keycard_proto::secret::ct_eq;
use keycard_services::auth::Caller;
use keycard_services::sts::Credentials;

/// Idle timeout: no request for this long ends the session.
pub const IDLE_SECONDS: i64 = 15 * 60;
/// Absolute timeout, whatever the activity.
pub const ABSOLUTE_SECONDS: i64 = 12 * 3600;
/// The session cookie's name.
pub const COOKIE: &str = "keycard_console";
/// The sign-in form's pre-session CSRF cookie.
pub const SIGNIN_COOKIE: &str = "keycard_signin";

/// One signed-in browser.
#[derive(Clone)]
pub struct Session {
    pub csrf: String,
    pub caller: Caller,
    pub credentials: Credentials,
    pub created: i64,
    pub last_seen: i64,
    pub mfa: bool,
}

impl Session {
    /// Who the header says is signed in.
    pub fn label(&self) -> String {
        match &self.caller.kind {
            keycard_services::auth::CallerKind::User { name, .. } => {
                format!("{name} @ {}", self.caller.account)
            }
            _ => format!("root @ {}", self.caller.account),
        }
    }

    /// Whether a submitted CSRF token is this session's (constant time).
    pub fn csrf_ok(&self, given: &str) -> bool {
        !given.is_empty() && ct_eq(self.csrf.as_bytes(), given.as_bytes())
    }
}

/// A random token (session ids, CSRF tokens).
pub fn token() -> String {
    hex::encode(keycard_services::crypto::random_bytes::<32>())
}

/// The live sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start a session; returns its id.
    pub fn start(&self, caller: Caller, credentials: Credentials, mfa: bool, now: i64) -> String {
        let id = token();
        let mut m = self.lock();
        m.retain(|_, s| live(s, now));
        m.insert(
            id.clone(),
            Session {
                csrf: token(),
                caller,
                credentials,
                created: now,
                last_seen: now,
                mfa,
            },
        );
        id
    }

    /// The live session `id` names, touched; an expired one is removed.
    pub fn get(&self, id: &str, now: i64) -> Option<Session> {
        let mut m = self.lock();
        let s = m.get_mut(id)?;
        if !live(s, now) {
            m.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(s.clone())
    }

    /// Replace a session's credentials (renewed before they expire).
    pub fn renew(&self, id: &str, credentials: Credentials) {
        if let Some(s) = self.lock().get_mut(id) {
            s.credentials = credentials;
        }
    }

    /// Sign-out: the id no longer names anything.
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }
}

fn live(s: &Session, now: i64) -> bool {
    now - s.last_seen < IDLE_SECONDS && now - s.created < ABSOLUTE_SECONDS
}

/// Failed sign-ins that lock a user out for [`LOCKOUT_SECONDS`].
pub const LOCKOUT_FAILURES: usize = 5;
/// The window failures are counted in, and how long a lock-out lasts.
pub const LOCKOUT_SECONDS: i64 = 15 * 60;

/// Recent failed sign-ins per (account, user): enough of them refuse
/// further attempts, right or wrong, until the window passes.
#[derive(Default)]
pub struct Lockout {
    failures: Mutex<HashMap<String, Vec<i64>>>,
}

impl Lockout {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<i64>>> {
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `who` is locked out at `now`.
    pub fn locked(&self, who: &str, now: i64) -> bool {
        let mut m = self.lock();
        let Some(v) = m.get_mut(who) else {
            return false;
        };
        v.retain(|t| now - t < LOCKOUT_SECONDS);
        v.len() >= LOCKOUT_FAILURES
    }

    pub fn failed(&self, who: &str, now: i64) {
        self.lock().entry(who.to_string()).or_default().push(now);
    }

    pub fn succeeded(&self, who: &str) {
        self.lock().remove(who);
    }
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, scoped to the
/// console, Secure over TLS; `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, secure: bool, max_age: Option<i64>) -> String {
    let mut c = format!("{name}={value}; Path=/console; HttpOnly; SameSite=Strict");
    if secure {
        c.push_str("; Secure");
    }
    if let Some(a) = max_age {
        c.push_str(&format!("; Max-Age={a}"));
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    fn creds() -> Credentials {
        Credentials {
            access_key_id: "ASIA".into(),
            secret_access_key: Default::default(),
            session_token: String::new(),
            expiration: 0,
        }
    }

    #[test]
    fn idle_and_absolute_timeouts_end_sessions() {
        let s = Sessions::default();
        let id = s.start(Caller::root("123456789012", ""), creds(), false, 1000);
        assert!(s.get(&id, 1000 + IDLE_SECONDS - 1).is_some());
        assert!(s.get(&id, 1000 + 2 * IDLE_SECONDS - 2).is_some());
        assert!(s.get(&id, 1000 + 4 * IDLE_SECONDS).is_none());
        let id = s.start(Caller::root("123456789012", ""), creds(), false, 0);
        let mut t = 0;
        while t + 600 < ABSOLUTE_SECONDS {
            t += 600;
            assert!(s.get(&id, t).is_some());
        }
        assert!(s.get(&id, ABSOLUTE_SECONDS).is_none());
    }

    #[test]
    fn sign_out_ends_and_csrf_compares() {
        let s = Sessions::default();
        let id = s.start(Caller::root("123456789012", ""), creds(), false, 0);
        let sess = s.get(&id, 1).expect("live");
        assert!(sess.csrf_ok(&sess.csrf.clone()));
        assert!(!sess.csrf_ok(""));
        assert!(!sess.csrf_ok("x"));
        s.end(&id);
        assert!(s.get(&id, 2).is_none());
    }

    #[test]
    fn lockout_after_failures_until_the_window_passes() {
        let l = Lockout::default();
        for t in 0..LOCKOUT_FAILURES as i64 {
            assert!(!l.locked("a/u", t));
            l.failed("a/u", t);
        }
        assert!(l.locked("a/u", 10));
        assert!(!l.locked("a/other", 10));
        assert!(!l.locked("a/u", LOCKOUT_SECONDS + LOCKOUT_FAILURES as i64));
        l.failed("a/u", 0);
        l.succeeded("a/u");
        assert!(!l.locked("a/u", 1));
    }

    #[test]
    fn cookies_are_strict_and_http_only() {
        let c = set_cookie(COOKIE, "v", true, None);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!set_cookie(COOKIE, "v", false, None).contains("Secure"));
    }
}
