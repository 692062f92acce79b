//! What the process boundary costs: GetValues through the memory plugin process versus the same
//! `Database` called in-process, and plugin start-up (spawn to first successful call).
//! Run with `cargo bench -p confd-database-memory`; ratios are against the in-process numbers
//! measured in the same run.
//!
//! The plugin column is the memory plugin as shipped, which answers streaming reads through
//! `ServeOpts::visit_values` (entries encoded straight from the store). The "Database only"
//! column is the same plugin serving only the `Database` trait (`get_values` builds a map that
//! the SDK encodes), as a plugin that does not opt in.

use std::time::{Duration, Instant};

use confd_database_memory::Memory;
use confd_sdk::{Config, Database};
use confd_supervisor::{ClientOptions, PluginClient, PluginCommand};

const BIN: &str = env!("CARGO_BIN_EXE_confd-database-memory");

fn data(n: usize) -> Config {
    (0..n)
        .map(|i| (format!("data./bench/key{i:05}"), format!("value-{i}")))
        .collect()
}

/// Median time per call over enough rounds to fill about `budget`.
async fn per_call<D: Database>(db: &D, keys: &[String], budget: Duration) -> Duration {
    let mut samples = Vec::new();
    let start = Instant::now();
    while samples.len() < 10 || (start.elapsed() < budget && samples.len() < 5000) {
        let t = Instant::now();
        let values = db.get_values(keys).await.expect("get_values");
        samples.push(t.elapsed());
        std::hint::black_box(values);
    }
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // Inside a spawned task, as the host runs its calls (block_on would measure extra wake-ups
    // of the main thread).
    let bench = runtime.spawn(async {
        let keys = vec!["/bench".to_string()];
        let plugin = PluginClient::start(PluginCommand::new("memory", BIN), ClientOptions::default())
            .await
            .expect("plugin starts");
        let map_only = PluginClient::start(
            PluginCommand::new("memory", BIN).env("CONFD_MEMORY_PLUGIN_MAP_ONLY", "1"),
            ClientOptions::default(),
        )
        .await
        .expect("plugin starts");
        let local = Memory::new();
        println!(
            "GetValues (median per call)    in-process        plugin   ratio   Database only   ratio"
        );
        for n in [1usize, 100, 10_000] {
            let config = data(n);
            local.configure(config.clone()).await.expect("configure");
            plugin.configure(config.clone()).await.expect("configure");
            map_only.configure(config).await.expect("configure");
            // warm up all paths
            per_call(&local, &keys, Duration::from_millis(100)).await;
            per_call(&plugin, &keys, Duration::from_millis(100)).await;
            per_call(&map_only, &keys, Duration::from_millis(100)).await;
            let a = per_call(&local, &keys, Duration::from_secs(1)).await;
            let b = per_call(&plugin, &keys, Duration::from_secs(1)).await;
            let c = per_call(&map_only, &keys, Duration::from_secs(1)).await;
            println!(
                "  {n:>6} keys               {:>12.1?} {:>12.1?} {:>7.2}x {:>15.1?} {:>7.2}x",
                a,
                b,
                b.as_secs_f64() / a.as_secs_f64(),
                c,
                c.as_secs_f64() / a.as_secs_f64()
            );
        }
        plugin.shutdown().await;
        map_only.shutdown().await;

        let mut startups = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let client =
                PluginClient::start(PluginCommand::new("memory", BIN), ClientOptions::default())
                    .await
                    .expect("plugin starts");
            client.get_values(&keys).await.expect("first call");
            startups.push(t.elapsed());
            client.shutdown().await;
        }
        startups.sort();
        println!(
            "Start-up, spawn to first successful call (20 runs): median {:.1?}, min {:.1?}, max {:.1?}",
            startups[startups.len() / 2],
            startups[0],
            startups[startups.len() - 1]
        );
    });
    runtime.block_on(bench).expect("benchmark task");
}
