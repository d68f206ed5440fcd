//! Which role groups a `serve` process runs (`--roles`, `DIALTONE_ROLES`, `roles = […]`).
//!
//! - **voice** (also named `edge` or `media`: one group, since a call's media lives with its
//!   SIP dialog and RTP goes straight to the owning node): the SIP endpoint, the media
//!   runtime, the calls this node owns, their status callbacks (a call's stream has one
//!   writer, its owner), commands for them, and ending the calls of lost nodes.
//! - **api**: the REST API, the console and the live event streams.
//! - **callbacks**: Event Streams webhook sinks (one writer per sink, so one such node).
//! - **projector**: keeps the read models current. With the embedded read models every
//!   process projects for itself whatever its roles; `projector` alone makes a process that
//!   only does that (for SQL on its read models, `billing reconcile`).
//!
//! Every process heartbeats on the log and serves `/healthz` and `/metrics`.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    pub voice: bool,
    pub api: bool,
    pub callbacks: bool,
    pub projector: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum RolesError {
    #[error("unknown role {0:?}: expected edge, voice, media, api, projector, callbacks or all")]
    Unknown(String),
    #[error("no roles given")]
    Empty,
}

impl Roles {
    pub const ALL: Roles = Roles {
        voice: true,
        api: true,
        callbacks: true,
        projector: true,
    };

    /// Parses a comma-separated list (`edge,voice,media`, `api,projector`, `all`).
    pub fn parse(list: &str) -> Result<Roles, RolesError> {
        let mut roles = Roles {
            voice: false,
            api: false,
            callbacks: false,
            projector: false,
        };
        let mut any = false;
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            any = true;
            match name.to_ascii_lowercase().as_str() {
                "edge" | "voice" | "media" => roles.voice = true,
                "api" => roles.api = true,
                "callbacks" => roles.callbacks = true,
                "projector" => roles.projector = true,
                "all" => roles = Roles::ALL,
                _ => return Err(RolesError::Unknown(name.to_owned())),
            }
        }
        if any {
            Ok(roles)
        } else {
            Err(RolesError::Empty)
        }
    }

    /// The role names, for logs, `/healthz` and the `dialtone_role` gauge.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        if self.voice {
            names.push("voice");
        }
        if self.api {
            names.push("api");
        }
        if self.callbacks {
            names.push("callbacks");
        }
        // Every process projects (embedded read models); name it only when asked for.
        if self.projector {
            names.push("projector");
        }
        names
    }
}

impl fmt::Display for Roles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_lists() {
        assert_eq!(Roles::parse("all").unwrap(), Roles::ALL);
        let voice = Roles::parse("edge,voice,media").unwrap();
        assert!(voice.voice && !voice.api && !voice.callbacks && !voice.projector);
        assert_eq!(Roles::parse("media").unwrap(), voice);
        let api = Roles::parse(" api , projector ").unwrap();
        assert!(api.api && api.projector && !api.voice);
        assert_eq!(api.to_string(), "api,projector");
        assert!(matches!(Roles::parse("sms"), Err(RolesError::Unknown(r)) if r == "sms"));
        assert!(matches!(Roles::parse(" , "), Err(RolesError::Empty)));
    }
}
