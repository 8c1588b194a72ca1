//! The one error type of the engine: an errno, the syscall that returned it, what it was
//! about (an interface or an option), a sentence saying what was asked, and a hint saying what
//! to do. The binding turns it into the facade's `NetringError` without losing any of that.

use std::fmt;

pub use nix::errno::Errno;

/// What an error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    None,
    /// A network interface, by name.
    Interface(String),
    /// A configuration option, by the name users write in the options object (`blockSize`,
    /// `fanout.mode`), so that errors, typings and docs use one word.
    Option(&'static str),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    pub errno: Errno,
    pub syscall: Option<&'static str>,
    pub subject: Subject,
    pub message: String,
    pub hint: Option<String>,
}

pub type Result<T> = std::result::Result<T, Error>;

const PERMISSION_HINT: &str = "packet sockets need CAP_NET_RAW (and CAP_NET_ADMIN for promiscuous \
mode, fanout, busy polling and qdisc bypass): run as root, or grant the capabilities to the node \
binary with `sudo setcap cap_net_raw,cap_net_admin+ep \"$(readlink -f \"$(command -v node)\")\"`";

impl Error {
    /// A failed system call. `doing` says what was asked, in words a user recognises.
    pub fn sys(errno: Errno, syscall: &'static str, subject: Subject, doing: impl fmt::Display) -> Self {
        let message = format!("{doing} failed: {} ({})", errno.desc(), code_of(errno));
        let hint = default_hint(errno, &subject);
        Error { errno, syscall: Some(syscall), subject, message, hint }
    }

    /// The last OS error of a system call.
    pub fn last(syscall: &'static str, subject: Subject, doing: impl fmt::Display) -> Self {
        Self::sys(Errno::last(), syscall, subject, doing)
    }

    /// An option value the engine refuses before making any system call.
    pub fn invalid_option(option: &'static str, why: impl fmt::Display) -> Self {
        Error {
            errno: Errno::EINVAL,
            syscall: None,
            subject: Subject::Option(option),
            message: format!("invalid option {option}: {why}"),
            hint: None,
        }
    }

    /// Any other error with an errno and a message of our own.
    pub fn new(errno: Errno, subject: Subject, message: impl Into<String>) -> Self {
        let hint = default_hint(errno, &subject);
        Error { errno, syscall: None, subject, message: message.into(), hint }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn with_syscall(mut self, syscall: &'static str) -> Self {
        self.syscall = Some(syscall);
        self
    }

    /// Node-style error code: the errno's symbolic name (`ENODEV`).
    pub fn code(&self) -> String {
        code_of(self.errno)
    }
}

/// The symbolic name of an errno (`ENODEV`), as Node reports it in `err.code`.
pub fn code_of(errno: Errno) -> String {
    // nix derives Debug for Errno, which prints exactly the symbolic name.
    format!("{errno:?}")
}

fn default_hint(errno: Errno, subject: &Subject) -> Option<String> {
    match errno {
        Errno::EPERM | Errno::EACCES => Some(PERMISSION_HINT.to_string()),
        Errno::ENODEV | Errno::ENXIO => match subject {
            Subject::Interface(name) => Some(format!(
                "there is no interface named '{name}' in this network namespace: list them with `ip link`"
            )),
            _ => None,
        },
        Errno::ENETDOWN => Some("bring the interface up (`ip link set <name> up`) and open it again".into()),
        Errno::ENOMEM => Some("ask for a smaller ring (blockSize × blockCount) or free memory".into()),
        Errno::EBADF => Some("the socket was closed; open a new one".into()),
        _ => None,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sys_error_names_code_and_hint() {
        let e = Error::sys(Errno::EPERM, "socket", Subject::None, "opening a packet socket");
        assert_eq!(e.code(), "EPERM");
        assert!(e.message.starts_with("opening a packet socket failed: Operation not permitted"));
        assert!(e.hint.as_deref().unwrap().contains("CAP_NET_RAW"));
    }

    #[test]
    fn enodev_hint_names_interface() {
        let e = Error::sys(Errno::ENODEV, "if_nametoindex", Subject::Interface("nope0".into()), "x");
        assert!(e.hint.unwrap().contains("'nope0'"));
    }
}
