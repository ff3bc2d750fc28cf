//! One poll pass over a large CKAN: by default 100 000 datasets with 5 resources each
//! (500 000), 3 tags each and one group each, in a database without triggers. Times the
//! baseline pass, then passes with nothing changed (the cost every cycle pays), then a
//! pass after 1 000 datasets were edited the way package_update edits them.
//!
//! `cargo bench --bench poll` (uses `CKAN_WEBHOOKS_BENCH_DATABASE_URL`, a server's
//! `postgres` database, when set; else starts a throwaway cluster). Sizes:
//! `CKAN_WEBHOOKS_BENCH_DATASETS` (default 100000), `CKAN_WEBHOOKS_BENCH_RESOURCES_PER`
//! (default 5), `CKAN_WEBHOOKS_BENCH_PASSES` (default 5).
//!
//! Besides its report, it prints one line per figure for scripts/bench.sh to collect:
//! `BENCH <scenario> | <figure> | <baseline> | <ratio or target> |`.

mod support;
use ckan_webhooks::poll::{self, Purpose};
use ckan_webhooks::{install, store};
use std::time::{Duration, Instant};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() {
    support::init_logging();
    let datasets = env("CKAN_WEBHOOKS_BENCH_DATASETS", 100_000) as i64;
    let per = env("CKAN_WEBHOOKS_BENCH_RESOURCES_PER", 5) as i64;
    let passes = env("CKAN_WEBHOOKS_BENCH_PASSES", 5).max(1) as usize;

    let (_cluster, admin) = support::server().await;
    let (url, _name) = support::database(&admin).await;
    let mut client = store::connect(&url).await.unwrap();
    install::uninstall(&mut client, false).await.unwrap();

    // CKAN-sized rows: titles, notes, urls and descriptions of realistic length.
    let load = Instant::now();
    client
        .batch_execute(&format!(
            "INSERT INTO \"group\" (id, name, type, is_organization, state)
             VALUES ('org', 'org', 'organization', true, 'active'),
                    ('grp', 'grp', 'group', false, 'active');
             INSERT INTO package (id, name, title, notes, type, owner_org, private, state,
                                  license_id, metadata_created, metadata_modified, extras)
             SELECT 'p' || i, 'dataset-' || i, 'Dataset number ' || i,
                    repeat('Some description of the data. ', 8), 'dataset', 'org',
                    i % 10 = 0, 'active', 'cc-by', now(), now(),
                    jsonb_build_object('source', 'harvest-' || (i % 7))
             FROM generate_series(1, {datasets}) i;
             INSERT INTO resource (id, package_id, url, format, description, position, name,
                                   state, created, metadata_modified)
             SELECT 'p' || i || '-r' || j, 'p' || i,
                    'https://data.example.org/files/' || i || '/' || j || '.csv', 'CSV',
                    repeat('Column notes. ', 5), j, 'file ' || j, 'active', now(), now()
             FROM generate_series(1, {datasets}) i, generate_series(0, {per} - 1) j;
             INSERT INTO tag (id, name) SELECT 't' || k, 'tag-' || k FROM generate_series(0, 99) k;
             INSERT INTO package_tag (id, package_id, tag_id, state)
             SELECT 'p' || i || '-t' || k, 'p' || i, 't' || ((i + k) % 100), 'active'
             FROM generate_series(1, {datasets}) i, generate_series(0, 2) k;
             INSERT INTO member (id, table_name, table_id, capacity, group_id, state)
             SELECT 'p' || i || '-m', 'package', 'p' || i, 'public', 'grp', 'active'
             FROM generate_series(1, {datasets}) i;
             -- The indexes real CKAN has on these (../shared/ckan/schema-2.12.0.sql).
             CREATE INDEX idx_package_resource_package_id ON resource (package_id);
             CREATE INDEX idx_package_tag_pkg_id ON package_tag (package_id);
             CREATE INDEX idx_group_pkg_id ON member (table_id);"
        ))
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    let load = load.elapsed();

    let started = Instant::now();
    let baseline = poll::pass(&mut client, Purpose::Poll).await.unwrap();
    let baseline_time = started.elapsed();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();

    let mut idle = Vec::new();
    for _ in 0..passes {
        let started = Instant::now();
        let pass = poll::pass(&mut client, Purpose::Poll).await.unwrap();
        idle.push(started.elapsed());
        assert_eq!(pass.changes, 0, "nothing changed: {pass:?}");
    }
    idle.sort();

    // 1 000 datasets edited as package_update does: a field, then metadata_modified.
    client
        .batch_execute(
            "UPDATE package SET title = title || ' (edited)', metadata_modified = clock_timestamp()
             WHERE id IN (SELECT 'p' || i FROM generate_series(1, 1000) i)",
        )
        .await
        .unwrap();
    let started = Instant::now();
    let edited = poll::pass(&mut client, Purpose::Poll).await.unwrap();
    let edited_time = started.elapsed();

    let sizes: (i64, i64) = {
        let row = client
            .query_one(
                "SELECT pg_total_relation_size('ckan_webhooks.shadow_package'),
                        pg_total_relation_size('ckan_webhooks.shadow_resource')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };

    let median = idle[idle.len() / 2];
    println!(
        "# poll pass over {datasets} datasets, {} resources",
        datasets * per
    );
    println!("load (generate_series): {:.1} s", load.as_secs_f64());
    println!(
        "baseline pass: {:.1} s ({:?} datasets/resources recorded)",
        baseline_time.as_secs_f64(),
        baseline.baseline
    );
    println!(
        "nothing changed, {passes} passes: min {:.0} ms, median {:.0} ms, max {:.0} ms",
        ms(idle[0]),
        ms(median),
        ms(idle[idle.len() - 1])
    );
    println!(
        "after 1 000 datasets edited: {:.0} ms, {} changes written",
        ms(edited_time),
        edited.changes
    );
    println!(
        "shadow size: datasets {:.1} MB, resources {:.1} MB",
        sizes.0 as f64 / 1e6,
        sizes.1 as f64 / 1e6
    );
    println!(
        "BENCH poll pass, nothing changed, {datasets} datasets / {} resources | {:.0} ms median of {passes} | – | reported |",
        datasets * per,
        ms(median)
    );
    println!(
        "BENCH poll pass after 1 000 datasets edited | {:.0} ms | – | reported |",
        ms(edited_time)
    );
    println!(
        "BENCH poll baseline (first pass) | {:.1} s | – | once |",
        baseline_time.as_secs_f64()
    );
    println!(
        "BENCH poll shadow size | {:.1} MB | – | reported |",
        (sizes.0 + sizes.1) as f64 / 1e6
    );
}
