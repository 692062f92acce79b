//! A backend described once: its name and aliases, default nodes, the settings its `Configure`
//! accepts and where the host takes each from, what it can do, and how to build it. The host
//! lists builtin descriptors and reads everything from them (discovery, `internal-plugin`,
//! `--list-backends`, SRV discovery, defaults); a backend's own plugin executable serves from the
//! same description, so the two can never disagree.

use std::sync::Arc;

use crate::{Database, DatabaseInfo, ServeOpts, SharedDatabase};

/// Everything the host and the plugin executable need to know about one backend.
#[derive(Debug, Clone, Copy)]
pub struct Descriptor {
    /// The name `--backend` and a resource's `backend` use, and the plugin's `Info` name.
    pub name: &'static str,
    /// Other names users write for it (confd's `etcdv3` for etcd).
    pub aliases: &'static [&'static str],
    /// One line for `--list-backends`.
    pub summary: &'static str,
    /// Nodes used when none is configured (empty: the backend takes no nodes).
    pub default_nodes: &'static [&'static str],
    /// The settings `Configure` accepts; the host sends these keys and nothing else.
    pub settings: &'static [Setting],
    /// Capability names reported by `Info` (`"watch"`).
    pub capabilities: &'static [&'static str],
    /// How nodes found through DNS SRV records are written for this backend.
    pub srv_nodes: SrvNodes,
    /// The version reported by `Info`.
    pub version: &'static str,
    /// A new, unconfigured database.
    pub database: fn() -> SharedDatabase,
}

/// One key of a backend's `Configure` map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    /// The key as the backend reads it (`caCert`).
    pub key: &'static str,
    /// The host settings (confd.toml names, e.g. `client_cakeys`) it is taken from: the first
    /// one that is set wins. Empty for a key only `[plugins.<name>]` / `--plugin-config` set.
    pub from: &'static [&'static str],
    /// What it means, for people.
    pub doc: &'static str,
}

impl Setting {
    /// A key filled from one host setting.
    pub const fn from(key: &'static str, host: &'static [&'static str], doc: &'static str) -> Self {
        Setting {
            key,
            from: host,
            doc,
        }
    }
}

/// How `host:port` pairs from SRV records become this backend's nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SrvNodes {
    /// The backend takes no nodes; SRV discovery does not apply.
    None,
    /// `host:port` as it is.
    HostPort,
    /// `<scheme>://host:port`, with the host's `scheme` setting (`http` when empty).
    Url,
}

impl Descriptor {
    /// Whether `name` is this backend's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.contains(&name)
    }

    /// Whether `Info` reports `capability`.
    pub fn can(&self, capability: &str) -> bool {
        self.capabilities.contains(&capability)
    }

    /// The setting `key`, if the backend accepts it.
    pub fn setting(&self, key: &str) -> Option<&'static Setting> {
        self.settings.iter().find(|s| s.key == key)
    }

    /// What `Info` answers.
    pub fn info(&self) -> DatabaseInfo {
        DatabaseInfo {
            name: self.name.to_string(),
            version: self.version.to_string(),
            capabilities: self.capabilities.iter().map(|c| c.to_string()).collect(),
            member: String::new(),
        }
    }

    /// The serve options of this backend's plugin process: `serve(DESCRIPTOR.serve_opts())` is a
    /// complete plugin `main`.
    pub fn serve_opts(&self) -> ServeOpts<SharedDatabase> {
        ServeOpts::new(self.name, self.database)
            .version(self.version)
            .capabilities(self.capabilities.iter().copied())
    }

    /// `discovered` (SRV `host:port` pairs) written as this backend's nodes.
    pub fn srv_nodes(&self, scheme: &str, discovered: Vec<String>) -> Vec<String> {
        match self.srv_nodes {
            SrvNodes::None | SrvNodes::HostPort => discovered,
            SrvNodes::Url => {
                let scheme = if scheme.is_empty() { "http" } else { scheme };
                discovered
                    .into_iter()
                    .map(|n| format!("{scheme}://{n}"))
                    .collect()
            }
        }
    }
}

/// A `Database` behind the shared pointer descriptors hand out: `database: shared::<Etcd>`.
pub fn shared<D: Database + Default>() -> SharedDatabase {
    Arc::new(D::default())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: Descriptor = Descriptor {
        name: "demo",
        aliases: &["demo2"],
        summary: "a demo",
        default_nodes: &["127.0.0.1:1"],
        settings: &[Setting::from("nodes", &["nodes"], "where")],
        capabilities: &["watch"],
        srv_nodes: SrvNodes::Url,
        version: "1.2.3",
        database: || panic!("not built in this test"),
    };

    #[test]
    fn names_settings_and_capabilities_are_read_from_the_description() {
        assert!(DEMO.answers_to("demo") && DEMO.answers_to("demo2"));
        assert!(!DEMO.answers_to("dem"));
        assert!(DEMO.can("watch") && !DEMO.can("fly"));
        assert_eq!(DEMO.setting("nodes").map(|s| s.from), Some(&["nodes"][..]));
        assert!(DEMO.setting("other").is_none());
        let info = DEMO.info();
        assert_eq!(
            (info.name.as_str(), info.version.as_str()),
            ("demo", "1.2.3")
        );
        assert_eq!(info.capabilities, ["watch"]);
    }

    #[test]
    fn srv_nodes_follow_the_description() {
        let found = vec!["a:1".to_string()];
        assert_eq!(DEMO.srv_nodes("https", found.clone()), ["https://a:1"]);
        assert_eq!(DEMO.srv_nodes("", found.clone()), ["http://a:1"]);
        let plain = Descriptor {
            srv_nodes: SrvNodes::HostPort,
            ..DEMO
        };
        assert_eq!(plain.srv_nodes("https", found), ["a:1"]);
    }
}
