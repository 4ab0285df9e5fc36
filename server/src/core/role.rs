//! Roles: what an API key may do. A key grants exactly one.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Manages one account's webhooks and reads its deliveries and events.
    Admin,
    /// Publishes events for any account, and reads them.
    Publisher,
    /// Streams and reports deliveries.
    Daemon,
}

impl Role {
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Publisher => "publisher",
            Role::Daemon => "daemon",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        match text {
            "admin" => Some(Role::Admin),
            "publisher" => Some(Role::Publisher),
            "daemon" => Some(Role::Daemon),
            _ => None,
        }
    }
}
