//! Test infrastructure shared by confd's test suites: real etcd, redis and
//! zookeeper servers on free loopback ports, and in-process emulators of the
//! Consul KV and Vault HTTP APIs.
//!
//! Server binaries come from Debian packages (`etcd-server`, `redis-server`, `zookeeper`).
//! When one is missing, [`EtcdServer::start`] and [`RedisServer::start`]
//! return `None` after printing a loud skip notice, except under `CI=true`,
//! where they panic: CI must never silently skip a backend.
//!
//! [`parse_metrics`] reads a `/metrics` scrape with the Prometheus client library's own
//! parser (Python `prometheus_client`, in the virtualenv `scripts/setup-python.sh` makes).
//!
//! [`workspace_bin`] builds a workspace package once per test process and
//! returns the path of one of its executables.

mod bins;
mod consul;
mod emulator;
mod etcd;
mod https;
mod process;
mod prometheus;
mod redis;
mod tls;
mod vault;
mod zookeeper;

pub use bins::{profile_dir, workspace_bin, workspace_root};
pub use consul::ConsulEmulator;
pub use emulator::EmulatorTls;
pub use etcd::{EtcdCluster, EtcdOptions, EtcdServer};
pub use process::{free_port, http_get, require_binary};
pub use prometheus::{Family, Sample, parse_metrics};
pub use redis::{RedisOptions, RedisSentinels, RedisServer, RedisTls};
pub use tls::TestCertificates;
pub use vault::{VaultEmulator, VaultLogin};
pub use zookeeper::{ZookeeperEnsemble, ZookeeperServer};
