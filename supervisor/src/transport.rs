//! How the host reaches its plugins, so that no other local user can: Unix sockets inside one
//! private directory per confd process (mode 0700, removed when the run ends), or, only when
//! asked for, TCP on 127.0.0.1 with go-plugin's AutoMTLS.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use confd_sdk::TRANSPORT_VAR;
use confd_sdk::tls::Identity;

/// The transport a host asks its plugins for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Transport {
    /// A Unix socket in a private directory, plaintext gRPC (the default).
    #[default]
    Unix,
    /// TCP on 127.0.0.1 with AutoMTLS: both sides present one-time certificates and each
    /// accepts only the other's. For hosts where Unix sockets cannot be used.
    Tcp,
}

impl Transport {
    /// The name used by `--plugin-transport`, `CONFD_PLUGIN_TRANSPORT` and confd.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Unix => "unix",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Transport, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "unix" => Ok(Transport::Unix),
            "tcp" => Ok(Transport::Tcp),
            other => Err(format!(
                "unknown plugin transport {other:?} (expected unix or tcp)"
            )),
        }
    }
}

/// The name prefix of a host's socket directory: `confd-<pid>-` and six random letters or
/// digits. The pid lets a later run tell the directory of a dead confd from a live one's.
pub const SOCKET_DIR_PREFIX: &str = "confd-";

/// One confd process's private directory for its plugins' sockets, created with mode 0700 and
/// removed (with whatever the plugins left in it) when dropped. Its path reaches every plugin as
/// `PLUGIN_UNIX_SOCKET_DIR`.
#[derive(Debug)]
pub struct SocketDir {
    dir: tempfile::TempDir,
}

impl SocketDir {
    /// Creates `<base>/confd-<pid>-XXXXXX`. `base` is `PLUGIN_UNIX_SOCKET_DIR` when confd
    /// itself was given one, otherwise the temporary directory (`TMPDIR` or /tmp).
    pub fn create() -> io::Result<SocketDir> {
        SocketDir::create_in(&SocketDir::base())
    }

    /// Where [`SocketDir::create`] puts the directory.
    pub fn base() -> PathBuf {
        std::env::var_os("PLUGIN_UNIX_SOCKET_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
    }

    /// Creates the directory inside `base`.
    pub fn create_in(base: &Path) -> io::Result<SocketDir> {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::Builder::new()
            .prefix(&format!("{SOCKET_DIR_PREFIX}{}-", std::process::id()))
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)
            .map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot create the private plugin socket directory in {}: {e}",
                        base.display()
                    ),
                )
            })?;
        Ok(SocketDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

/// What one plugin start adds to the environment for the transport, and the identity the host
/// presents when it asked for AutoMTLS.
pub(crate) struct TransportEnv {
    pub(crate) env: Vec<(OsString, OsString)>,
    pub(crate) identity: Option<Identity>,
}

impl TransportEnv {
    /// For TCP a fresh certificate per start (go-plugin makes one per client); for Unix sockets
    /// the host's private directory, and `CONFD_PLUGIN_TRANSPORT` set either way so that a value
    /// inherited from confd's own environment cannot disagree with the setting.
    pub(crate) fn new(
        transport: Transport,
        socket_dir: Option<&Path>,
    ) -> Result<TransportEnv, confd_sdk::tls::TlsError> {
        let mut env: Vec<(OsString, OsString)> =
            vec![(TRANSPORT_VAR.into(), transport.as_str().into())];
        if let Some(dir) = socket_dir {
            env.push(("PLUGIN_UNIX_SOCKET_DIR".into(), dir.into()));
        }
        let identity = match transport {
            Transport::Unix => None,
            Transport::Tcp => {
                let identity = Identity::generate()?;
                env.push((
                    "PLUGIN_CLIENT_CERT".into(),
                    identity.certificate_pem().into(),
                ));
                Some(identity)
            }
        };
        Ok(TransportEnv { env, identity })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn the_socket_dir_is_private_named_after_the_pid_and_removed_on_drop() {
        let base = tempfile::tempdir().expect("tempdir");
        let dir = SocketDir::create_in(base.path()).expect("create");
        let path = dir.path().to_path_buf();
        let meta = std::fs::metadata(&path).expect("exists");
        assert_eq!(meta.permissions().mode() & 0o777, 0o700);
        let name = path.file_name().and_then(|n| n.to_str()).expect("name");
        let want = format!("confd-{}-", std::process::id());
        assert!(name.starts_with(&want), "{name}");
        // a plugin's own directory and socket inside go with it
        std::fs::create_dir(path.join("pluginAbCdEf")).expect("mkdir");
        std::os::unix::net::UnixListener::bind(path.join("pluginAbCdEf/plugin.sock"))
            .expect("bind");
        drop(dir);
        assert!(!path.exists());
    }

    #[test]
    fn a_missing_base_is_a_clear_error() {
        let err = SocketDir::create_in(Path::new("/nonexistent/confd-test")).expect_err("fails");
        assert!(
            err.to_string()
                .contains("cannot create the private plugin socket directory in /nonexistent"),
            "{err}"
        );
    }

    #[test]
    fn tcp_brings_a_certificate_unix_the_directory() {
        let unix = TransportEnv::new(Transport::Unix, Some(Path::new("/run/x"))).expect("unix");
        assert!(unix.identity.is_none());
        assert_eq!(
            unix.env,
            vec![
                (TRANSPORT_VAR.into(), "unix".into()),
                ("PLUGIN_UNIX_SOCKET_DIR".into(), "/run/x".into())
            ]
        );
        let tcp = TransportEnv::new(Transport::Tcp, None).expect("tcp");
        let identity = tcp.identity.as_ref().expect("identity");
        let cert = tcp
            .env
            .iter()
            .find(|(k, _)| k == "PLUGIN_CLIENT_CERT")
            .map(|(_, v)| v.to_string_lossy().into_owned())
            .expect("PLUGIN_CLIENT_CERT");
        assert_eq!(cert, identity.certificate_pem());
        assert!(tcp.env.contains(&(TRANSPORT_VAR.into(), "tcp".into())));
    }

    #[test]
    fn transport_names() {
        assert_eq!("TCP".parse(), Ok(Transport::Tcp));
        assert_eq!(" unix".parse(), Ok(Transport::Unix));
        assert!("udp".parse::<Transport>().is_err());
        assert_eq!(Transport::default().to_string(), "unix");
    }
}
