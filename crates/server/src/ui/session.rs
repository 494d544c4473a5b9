//! The console's sessions: a random id in an HttpOnly, SameSite=Strict
//! cookie (Secure when the listener speaks TLS), the session itself on the
//! server. The token that opened it is never stored, neither in the cookie
//! nor here: only the token's name and role. A session ends at logout,
//! after [`IDLE`] without a request, or [`LIFETIME`] after login; each
//! holds a random CSRF token that every form posts back.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use ring::rand::{SecureRandom, SystemRandom};

use crate::rest::{Caller, Role};

/// The cookie's name.
pub(crate) const COOKIE_NAME: &str = "domicile_session";
/// A session unused this long ends.
pub(crate) const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after login, used or not.
pub(crate) const LIFETIME: Duration = Duration::from_secs(12 * 60 * 60);
/// Sessions kept at once; a login beyond it ends the oldest.
pub(crate) const MAX_SESSIONS: usize = 4096;

/// One logged-in browser.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    /// The token's name (what the ledger records as the actor).
    pub name: String,
    pub role: Role,
    /// Posted back by every form of this session.
    pub csrf: String,
    created: Instant,
    seen: Instant,
}

/// Every open session, by the BLAKE3 hash of its id.
#[derive(Debug)]
pub(crate) struct Sessions {
    open: Mutex<HashMap<[u8; 32], Session>>,
    rng: SystemRandom,
    idle: Duration,
    lifetime: Duration,
}

impl Sessions {
    pub(crate) fn new(idle: Duration, lifetime: Duration) -> Self {
        Sessions {
            open: Mutex::new(HashMap::new()),
            rng: SystemRandom::new(),
            idle,
            lifetime,
        }
    }

    /// Opens a session for `caller`: its id (for the cookie) and itself.
    /// `None` only if the system's random source fails.
    pub(crate) fn open(&self, caller: Caller) -> Option<(String, Session)> {
        let id = random_hex(&self.rng)?;
        let now = Instant::now();
        let session = Session {
            name: caller.name,
            role: caller.role,
            csrf: random_hex(&self.rng)?,
            created: now,
            seen: now,
        };
        let mut open = self.open.lock().ok()?;
        open.retain(|_, s| self.live(s, now));
        if open.len() >= MAX_SESSIONS
            && let Some(oldest) = open.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k)
        {
            open.remove(&oldest);
        }
        open.insert(key(&id), session.clone());
        Some((id, session))
    }

    /// The live session `id` names, marked as used now; an expired one is
    /// ended.
    pub(crate) fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut open = self.open.lock().ok()?;
        let k = key(id);
        let live = self.live(open.get(&k)?, now);
        if !live {
            open.remove(&k);
            return None;
        }
        let s = open.get_mut(&k)?;
        s.seen = now;
        Some(s.clone())
    }

    /// Ends session `id`.
    pub(crate) fn close(&self, id: &str) {
        if let Ok(mut open) = self.open.lock() {
            open.remove(&key(id));
        }
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.seen) < self.idle && now.duration_since(s.created) < self.lifetime
    }
}

fn key(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

/// 32 random bytes, hex.
fn random_hex(rng: &SystemRandom) -> Option<String> {
    let mut b = [0u8; 32];
    rng.fill(&mut b).ok()?;
    Some(hex::encode(b))
}

/// Whether a posted CSRF token is the session's (hashes compared in
/// constant time).
pub(crate) fn csrf_matches(session: &Session, posted: &str) -> bool {
    blake3::hash(session.csrf.as_bytes()) == blake3::hash(posted.as_bytes())
}

/// The session id a request's cookies carry.
pub(crate) fn cookie_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .map(|(_, v)| v.trim().to_string())
        .filter(|v| !v.is_empty() && v.len() <= 128)
}

/// The `Set-Cookie` value that gives the browser session `id`.
pub(crate) fn set_cookie(id: &str, secure: bool) -> String {
    format!(
        "{COOKIE_NAME}={id}; Path=/ui; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that makes the browser forget its session.
pub(crate) fn clear_cookie(secure: bool) -> String {
    format!(
        "{COOKIE_NAME}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn caller() -> Caller {
        Caller {
            name: "dpo".into(),
            role: Role::Auditor,
        }
    }

    #[test]
    fn a_session_is_found_by_its_id_only_and_ends_at_logout() {
        let sessions = Sessions::new(IDLE, LIFETIME);
        let (id, s) = sessions.open(caller()).unwrap();
        assert_eq!(id.len(), 64);
        assert_ne!(id, s.csrf);
        assert_eq!(sessions.get(&id).unwrap().name, "dpo");
        assert!(sessions.get(&id[1..]).is_none());
        assert!(sessions.get("").is_none());
        let (other, _) = sessions.open(caller()).unwrap();
        assert_ne!(id, other);
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
        assert!(sessions.get(&other).is_some());
    }

    #[test]
    fn an_idle_or_old_session_expires() {
        let sessions = Sessions::new(Duration::from_millis(30), LIFETIME);
        let (id, _) = sessions.open(caller()).unwrap();
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&id).is_none());
        let sessions = Sessions::new(IDLE, Duration::from_millis(30));
        let (id, _) = sessions.open(caller()).unwrap();
        assert!(sessions.get(&id).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_under_tls() {
        let c = set_cookie("abc", true);
        assert_eq!(
            c,
            "domicile_session=abc; Path=/ui; HttpOnly; SameSite=Strict; Secure"
        );
        assert!(!set_cookie("abc", false).contains("Secure"));
        assert!(clear_cookie(false).contains("Max-Age=0"));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "a=1; domicile_session=xyz ; b=2".parse().unwrap());
        assert_eq!(cookie_id(&h).as_deref(), Some("xyz"));
        let mut h = HeaderMap::new();
        h.insert(COOKIE, "domicile_session=".parse().unwrap());
        assert_eq!(cookie_id(&h), None);
    }

    #[test]
    fn the_csrf_token_must_match() {
        let sessions = Sessions::new(IDLE, LIFETIME);
        let (_, s) = sessions.open(caller()).unwrap();
        assert!(csrf_matches(&s, &s.csrf.clone()));
        assert!(!csrf_matches(&s, ""));
        assert!(!csrf_matches(&s, &s.csrf[1..]));
    }
}
