//! PostgreSQL store suite: run it with `make test-postgres` (it starts a throwaway cluster and
//! exports `POSTGRES_DSN`, `ATOM_PG_DATA`, `ATOM_PG_BIN` and `ATOM_PG_RUNAS`).
//!
//! Every test works in a database of its own. Invariants are checked from the raw rows as the
//! owner role (which row-level security does not restrict): placements and per-device
//! reservations are summed independently of the counters the replicas maintain.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::{BufRead, BufReader};
use std::process::{Command as Proc, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use atom_fabric::pg::{PgConfig, PgJournalStore, PgReplica, migrate};
use atom_fabric::quota::ResourceVector;
use atom_fabric::store::{Fabric, ManualClock, MemoryStore};
use atom_fabric::{
    Command, FabricError, NodeSpec, Outcome, Phase, Quota, RequestId, Resources, ScheduleRequest,
    Scheduler, SchedulerConfig,
};
use postgres::{Client, NoTls};

fn base_dsn() -> String {
    std::env::var("POSTGRES_DSN")
        .expect("POSTGRES_DSN is not set: run this suite with `make test-postgres`")
}

/// A fresh database for one test; returns its owner DSN.
fn fresh_db(name: &str) -> String {
    let base = base_dsn();
    let mut admin = Client::connect(&base, NoTls).expect("connect to the test cluster");
    admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    format!("{base} dbname={name}")
}

fn admin(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).unwrap()
}

fn config(dsn: &str, id: &str) -> PgConfig {
    let mut c = PgConfig::new(dsn, id);
    c.scheduler.max_tenant_gpus = 4;
    c
}

/// A small deterministic generator (xorshift64*).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn fleet(n: usize) -> Vec<NodeSpec> {
    (0..n)
        .map(|i| {
            let model = if i % 3 == 0 { "V100" } else { "A100" };
            NodeSpec::new(format!("node-{i:02}"), 64_000, 512 * 1024)
                .with_gpus(model, 8, 40_960)
                .with_label("region", if i % 2 == 0 { "eu" } else { "us" })
        })
        .collect()
}

const TENANTS: [&str; 6] = ["t0", "t1", "t2", "t3", "t4", "t5"];

fn quotas() -> Vec<(&'static str, Quota)> {
    let gpu = |g: u64| ResourceVector {
        gpu_milli: g * 1000,
        ..ResourceVector::ZERO
    };
    vec![
        ("t0", Quota::gpus(12)),
        ("t1", Quota::gpus(20).with_borrow_limit(gpu(8))),
        ("t2", Quota::gpus(30)),
        ("t3", Quota::gpus(40).with_borrow_limit(gpu(10))),
        ("t4", Quota::gpus(40)),
        ("t5", Quota::gpus(50).with_borrow_limit(gpu(20))),
    ]
}

fn random_request(rng: &mut Rng, tenant: &str) -> ScheduleRequest {
    let r = match rng.below(20) {
        0..=11 => Resources {
            gpu: 1,
            cpu: 4000,
            mem: 16_384,
            ..Default::default()
        },
        12..=16 => Resources {
            gpu: 1,
            gpu_milli: 500,
            cpu: 2000,
            mem: 8192,
            ..Default::default()
        },
        17..=18 => Resources {
            gpu: 2,
            cpu: 8000,
            mem: 32_768,
            ..Default::default()
        },
        _ => Resources {
            cpu: 6000,
            mem: 4096,
            ..Default::default()
        },
    };
    let replicas = if rng.below(10) == 0 { 2 } else { 1 };
    ScheduleRequest::new(tenant, &format!("model-{}", rng.below(5)), "v1", r)
        .with_replicas(replicas)
}

fn setup_fleet(r: &mut PgReplica, nodes: usize) {
    for spec in fleet(nodes) {
        r.register_node(&spec).unwrap();
    }
    for (t, q) in quotas() {
        r.set_quota(t, &q).unwrap();
    }
}

fn request_id(o: &Outcome) -> RequestId {
    match o {
        Outcome::Placed { request_id, .. }
        | Outcome::Queued { request_id, .. }
        | Outcome::Existing { request_id, .. }
        | Outcome::Phase { request_id, .. } => *request_id,
        other => panic!("unexpected outcome {other:?}"),
    }
}

/// Checks, from the raw rows, that nothing is over-committed and every counter is exact.
/// Returns (placed jobs, queued jobs).
fn check_invariants(dsn: &str) -> (i64, i64) {
    let mut c = admin(dsn);
    // Per node: live placements vs counters vs capacity.
    let nodes = c
        .query(
            "SELECT id, cpu_milli, memory_mib, tpus, cpu_used, mem_used, tpu_used, gpu_used FROM nf_nodes",
            &[],
        )
        .unwrap();
    let sums: HashMap<String, (i64, i64, i64)> = c
        .query(
            "SELECT p.node_id, sum(p.cpu)::bigint, sum(p.mem)::bigint, sum(p.tpu)::bigint \
             FROM nf_placements p JOIN nf_jobs j ON j.id = p.job_id \
             WHERE j.status IN ('placed', 'running') GROUP BY p.node_id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2), r.get(3))))
        .collect();
    let dev: HashMap<(String, i32), i64> = c
        .query(
            "SELECT r.node_id, r.device, sum(r.milli)::bigint FROM nf_reservations r \
             JOIN nf_jobs j ON j.id = r.job_id WHERE j.status IN ('placed', 'running') \
             GROUP BY r.node_id, r.device",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect();
    for n in &nodes {
        let id: String = n.get(0);
        let (cap_cpu, cap_mem): (i64, i64) = (n.get(1), n.get(2));
        let (cpu, mem, tpu) = sums.get(&id).copied().unwrap_or((0, 0, 0));
        assert!(cpu <= cap_cpu && mem <= cap_mem, "node {id} over-committed");
        assert_eq!(cpu, n.get::<_, i64>(4), "node {id} cpu counter");
        assert_eq!(mem, n.get::<_, i64>(5), "node {id} mem counter");
        assert_eq!(tpu, i64::from(n.get::<_, i32>(6)), "node {id} tpu counter");
        let gpu: Vec<i32> = n.get(7);
        for (d, &u) in gpu.iter().enumerate() {
            let held = dev.get(&(id.clone(), d as i32)).copied().unwrap_or(0);
            assert!(held <= 1000, "device {id}/{d} over-committed: {held}");
            assert_eq!(held, i64::from(u), "device {id}/{d} counter");
        }
    }
    // Reservations match the placements' devices exactly.
    let mismatched: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_placements p WHERE cardinality(p.devices) <> \
             (SELECT count(*) FROM nf_reservations r WHERE r.job_id = p.job_id \
              AND r.replica_index = p.replica_index)",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(mismatched, 0, "placements without their reservations");
    // Placements exist exactly for live jobs, one per replica.
    let bad: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_jobs j WHERE (j.status IN ('placed', 'running')) <> \
             ((SELECT count(*) FROM nf_placements p WHERE p.job_id = j.id) = j.replicas) \
             OR (j.status NOT IN ('placed', 'running') AND EXISTS \
                 (SELECT 1 FROM nf_placements p WHERE p.job_id = j.id))",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad, 0, "jobs whose placements do not match their phase");
    // Quotas: use equals the sum of live placements and stays within nominal + borrow limit.
    let q = c
        .query(
            "SELECT q.tenant_id, q.cohort, q.used_gpu_milli, q.used_cpu, \
             q.nominal_gpu_milli + q.borrow_gpu_milli, \
             coalesce((SELECT sum(cardinality(p.devices) * p.gpu_milli) FROM nf_placements p \
                       JOIN nf_jobs j ON j.id = p.job_id \
                       WHERE p.tenant_id = q.tenant_id AND j.status IN ('placed','running')), 0)::bigint, \
             coalesce((SELECT sum(p.cpu) FROM nf_placements p JOIN nf_jobs j ON j.id = p.job_id \
                       WHERE p.tenant_id = q.tenant_id AND j.status IN ('placed','running')), 0)::bigint \
             FROM nf_quotas q",
            &[],
        )
        .unwrap();
    let mut cohort_used: BTreeMap<String, i64> = BTreeMap::new();
    for r in &q {
        let t: String = r.get(0);
        let used: i64 = r.get(2);
        assert_eq!(used, r.get::<_, i64>(5), "tenant {t}: gpu quota counter");
        assert_eq!(
            r.get::<_, i64>(3),
            r.get::<_, i64>(6),
            "tenant {t}: cpu counter"
        );
        assert!(
            used <= r.get::<_, i64>(4),
            "tenant {t} exceeds its quota ceiling"
        );
        *cohort_used.entry(r.get(1)).or_default() += used;
    }
    for r in c
        .query(
            "SELECT cohort, used_gpu_milli, nominal_gpu_milli FROM nf_cohorts",
            &[],
        )
        .unwrap()
    {
        let name: String = r.get(0);
        let used: i64 = r.get(1);
        assert_eq!(
            used,
            cohort_used.get(&name).copied().unwrap_or(0),
            "cohort {name}"
        );
        assert!(
            used <= r.get::<_, i64>(2),
            "cohort {name} over its nominal sum"
        );
    }
    let placed: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_jobs WHERE status IN ('placed', 'running')",
            &[],
        )
        .unwrap()
        .get(0);
    let queued: i64 = c
        .query_one("SELECT count(*) FROM nf_jobs WHERE status = 'queued'", &[])
        .unwrap()
        .get(0);
    (placed, queued)
}

/// Asserts that every acknowledged id is in the database and in a consistent, non-limbo state.
fn check_acknowledged(dsn: &str, acked: &BTreeSet<u64>, released: &BTreeSet<u64>) {
    let mut c = admin(dsn);
    let rows = c
        .query("SELECT num, status, claimed_by FROM nf_jobs", &[])
        .unwrap();
    let db: HashMap<u64, (String, Option<String>)> = rows
        .iter()
        .map(|r| (r.get::<_, i64>(0) as u64, (r.get(1), r.get(2))))
        .collect();
    let live: BTreeSet<String> = c
        .query("SELECT replica_id FROM nf_replicas", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    for id in acked {
        let (status, claimed) = db
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged request req-{id} is lost"));
        if released.contains(id) {
            assert_eq!(status, "completed", "req-{id} was released");
        }
        if let Some(r) = claimed {
            assert!(live.contains(r), "req-{id} held by dead replica {r}");
        }
    }
}

#[test]
fn migrations_apply_once_even_when_replicas_start_together() {
    let dsn = fresh_db("atom_mig");
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let dsn = dsn.clone();
            std::thread::spawn(move || migrate(&dsn).unwrap())
        })
        .collect();
    let applied: Vec<Vec<i32>> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    assert_eq!(applied.iter().filter(|a| a.as_slice() == [8]).count(), 1);
    assert_eq!(applied.iter().filter(|a| a.is_empty()).count(), 2);
    assert!(migrate(&dsn).unwrap().is_empty());
    let mut c = admin(&dsn);
    let n: i64 = c
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .unwrap()
        .get(0);
    assert_eq!(n, 1);
    let rls: i64 = c
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname IN \
             ('nf_jobs','nf_placements','nf_reservations','nf_quotas','nf_events') \
             AND relrowsecurity AND relforcerowsecurity",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        rls, 5,
        "row-level security enabled and forced on every tenant table"
    );
}

#[test]
fn row_level_security_hides_other_tenants_even_from_hand_written_sql() {
    let dsn = fresh_db("atom_rls");
    let mut r = PgReplica::start(config(&dsn, "rls-1")).unwrap();
    setup_fleet(&mut r, 2);
    let mut ids = HashMap::new();
    for t in ["A", "B"] {
        r.set_quota(t, &Quota::gpus(8)).unwrap();
        let mut mine = Vec::new();
        for _ in 0..3 {
            let o = r
                .schedule(ScheduleRequest::new(
                    t,
                    "m",
                    "v1",
                    Resources {
                        gpu: 1,
                        cpu: 1000,
                        mem: 1024,
                        ..Default::default()
                    },
                ))
                .unwrap();
            assert!(matches!(o, Outcome::Placed { .. }), "{o:?}");
            mine.push(request_id(&o));
        }
        ids.insert(t, mine);
    }
    // The replica itself: B's request is invisible to A.
    let b0 = ids["B"][0];
    assert!(matches!(
        r.status("A", b0),
        Err(FabricError::RequestNotFound(_))
    ));
    assert_eq!(r.status("B", b0).unwrap().phase, Phase::Placed);
    // A release by the wrong tenant finds nothing and changes nothing.
    assert!(matches!(
        r.release("A", b0),
        Err(FabricError::RequestNotFound(_))
    ));

    // Hand-written SQL as the application role with tenant A set.
    let mut app_cfg: postgres::Config = dsn.parse().unwrap();
    app_cfg.user("atom_app");
    let mut app = app_cfg.connect(NoTls).unwrap();
    let role = app
        .query_one(
            "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
            &[],
        )
        .unwrap();
    assert!(!role.get::<_, bool>(0) && !role.get::<_, bool>(1));
    assert!(
        app.batch_execute("SET ROLE postgres").is_err(),
        "the app role cannot become the owner"
    );
    // No tenant set: nothing is visible.
    for t in [
        "nf_jobs",
        "nf_placements",
        "nf_reservations",
        "nf_quotas",
        "nf_events",
    ] {
        let n: i64 = app
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{t} without a tenant");
    }
    app.batch_execute("SET app.tenant_id = 'A'").unwrap();
    for t in [
        "nf_jobs",
        "nf_placements",
        "nf_reservations",
        "nf_quotas",
        "nf_events",
    ] {
        let other: i64 = app
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE tenant_id = 'B'"),
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(other, 0, "{t}: B's rows visible to A");
        let own: i64 = app
            .query_one(
                &format!("SELECT count(*) FROM {t} WHERE tenant_id = 'A'"),
                &[],
            )
            .unwrap()
            .get(0);
        assert!(own > 0, "{t}: A sees its own rows");
        let upd = app
            .execute(
                &format!("UPDATE {t} SET tenant_id = tenant_id WHERE tenant_id = 'B'"),
                &[],
            )
            .unwrap();
        assert_eq!(upd, 0, "{t}: A updated B's rows");
        let del = app
            .execute(&format!("DELETE FROM {t} WHERE tenant_id = 'B'"), &[])
            .unwrap();
        assert_eq!(del, 0, "{t}: A deleted B's rows");
    }
    let b0s = b0.to_string();
    assert_eq!(
        app.execute(
            "UPDATE nf_jobs SET status = 'completed' WHERE id = $1",
            &[&b0s]
        )
        .unwrap(),
        0
    );
    // Moving an own row to B, or inserting one for B, is refused.
    let a0 = ids["A"][0].to_string();
    let e = app
        .execute("UPDATE nf_jobs SET tenant_id = 'B' WHERE id = $1", &[&a0])
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");
    let e = app
        .execute(
            "INSERT INTO nf_events (tenant_id, kind) VALUES ('B', 'forged')",
            &[],
        )
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "42501", "{e}");
    // A cannot read the security-definer queue functions' tables around RLS either: it may
    // call them, but they only move claims, never return rows of others beyond id and tenant.
    drop(app);

    // As the owner: B's rows are intact, and the node counters cover both tenants.
    let mut c = admin(&dsn);
    let b_placed: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_jobs WHERE tenant_id = 'B' AND status = 'placed'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(b_placed, 3);
    let gpus: i64 = c
        .query_one(
            "SELECT sum(u)::bigint FROM nf_nodes, unnest(gpu_used) u",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(gpus, 6000, "node counters count every tenant's work");
    check_invariants(&dsn);
    r.shutdown().unwrap();
}

#[test]
fn journal_store_replays_like_the_embedded_store() {
    let dsn = fresh_db("atom_journal");
    let cmds: Vec<Command> = {
        let mut v = vec![
            Command::RegisterNode {
                spec: NodeSpec::new("n1", 16_000, 65_536).with_gpus("A100", 4, 40_960),
            },
            Command::RegisterNode {
                spec: NodeSpec::new("n2", 16_000, 65_536).with_gpus("V100", 4, 32_768),
            },
            Command::SetQuota {
                tenant_id: "acme".into(),
                quota: Quota::gpus(6),
            },
        ];
        let mut rng = Rng(7);
        for i in 0..40 {
            v.push(Command::Schedule {
                request: random_request(&mut rng, if i % 3 == 0 { "beta" } else { "acme" }),
            });
        }
        v
    };
    let clock = ManualClock::new(1_000);
    let digest_mem = {
        let mut f = Fabric::open(
            SchedulerConfig::default(),
            MemoryStore::default(),
            Box::new(clock.clone()),
        )
        .unwrap();
        for c in &cmds {
            let _ = f.execute(c.clone());
        }
        f.scheduler().state_digest().unwrap()
    };
    {
        let store = PgJournalStore::connect(&dsn, "main").unwrap();
        let mut f = Fabric::open(SchedulerConfig::default(), store, Box::new(clock.clone()))
            .unwrap()
            .with_snapshot_every(15);
        for c in &cmds {
            let _ = f.execute(c.clone());
        }
        assert_eq!(f.scheduler().state_digest().unwrap(), digest_mem);
    }
    // Reopen: snapshot plus journal tail replays to the same state.
    let store = PgJournalStore::connect(&dsn, "main").unwrap();
    let f = Fabric::open(SchedulerConfig::default(), store, Box::new(clock)).unwrap();
    assert_eq!(f.seq(), cmds.len() as u64);
    assert_eq!(f.scheduler().state_digest().unwrap(), digest_mem);
    let mut c = admin(&dsn);
    let left: i64 = c
        .query_one("SELECT count(*) FROM nf_journal WHERE store = 'main'", &[])
        .unwrap()
        .get(0);
    assert!(left < 15, "the snapshot trimmed the journal ({left} left)");
}

#[test]
fn one_replica_places_exactly_like_the_embedded_scheduler() {
    let dsn = fresh_db("atom_same");
    let cfg = config(&dsn, "same-1");
    let mut r = PgReplica::start(cfg.clone()).unwrap();
    let mut s = Scheduler::new(cfg.scheduler.clone());
    for spec in fleet(6) {
        r.register_node(&spec).unwrap();
        s.apply(Command::RegisterNode { spec }, 0).unwrap();
    }
    for (t, q) in quotas() {
        r.set_quota(t, &q).unwrap();
        s.apply(
            Command::SetQuota {
                tenant_id: t.into(),
                quota: q,
            },
            0,
        )
        .unwrap();
    }
    let mut rng = Rng(42);
    let mut compared = 0;
    for i in 0..300 {
        let tenant = TENANTS[(rng.below(6)) as usize];
        let req = random_request(&mut rng, tenant);
        let theirs = s
            .apply(
                Command::Schedule {
                    request: req.clone(),
                },
                i,
            )
            .unwrap();
        let ours = r.schedule(req).unwrap();
        match (&theirs, &ours) {
            (Outcome::Placed { placement: a, .. }, Outcome::Placed { placement: b, .. }) => {
                let a: Vec<_> = a.replicas.iter().map(|p| (&p.node, &p.devices)).collect();
                let b: Vec<_> = b.replicas.iter().map(|p| (&p.node, &p.devices)).collect();
                if a != b {
                    for n in s.cluster().nodes() {
                        eprintln!(
                            "{} cpu {} gpus {:?}",
                            n.id(),
                            n.cpu_free(),
                            (0..n.gpu_count())
                                .map(|i| n.gpu_free(i))
                                .collect::<Vec<_>>()
                        );
                    }
                    eprintln!("{theirs:#?}\n{ours:#?}");
                }
                assert_eq!(a, b, "request {i}: different placement");
                compared += 1;
            }
            (Outcome::Queued { reason: a, .. }, Outcome::Queued { reason: b, .. }) => {
                assert_eq!(a, b, "request {i}: queued for a different reason");
                // From here the embedded scheduler may drain its queue on later events; stop.
                break;
            }
            _ => panic!("request {i}: embedded {theirs:?}, postgres {ours:?}"),
        }
    }
    assert!(compared >= 50, "only {compared} placements compared");
    println!("{compared} placements identical to the embedded scheduler's");
    check_invariants(&dsn);
    r.shutdown().unwrap();
}

/// One replica's share of a concurrent run: `calls` schedule calls, releasing some held work
/// on the way and draining the shared queue after releases.
fn replica_worker(
    mut r: PgReplica,
    seed: u64,
    calls: usize,
    progress: &AtomicUsize,
) -> (BTreeSet<u64>, BTreeSet<u64>, PgReplica) {
    let mut rng = Rng(seed);
    let mut acked = BTreeSet::new();
    let mut released = BTreeSet::new();
    let mut held: Vec<(String, RequestId)> = Vec::new();
    for _ in 0..calls {
        let tenant = TENANTS[rng.below(6) as usize];
        let o = r.schedule(random_request(&mut rng, tenant)).unwrap();
        let id = request_id(&o);
        acked.insert(id.0);
        if matches!(o, Outcome::Placed { .. }) {
            held.push((tenant.to_string(), id));
        }
        progress.fetch_add(1, Ordering::Relaxed);
        if !held.is_empty() && rng.below(100) < 45 {
            let k = rng.below(held.len() as u64) as usize;
            let (t, id) = held.swap_remove(k);
            let o = r.release(&t, id).unwrap();
            assert!(matches!(
                o,
                Outcome::Phase {
                    phase: Phase::Completed,
                    ..
                }
            ));
            released.insert(id.0);
            if rng.below(4) == 0 {
                r.drain(2).unwrap();
            }
        }
    }
    (acked, released, r)
}

fn run_replicas(
    dsn: &str,
    n: usize,
    calls: usize,
    lease_ms: u64,
    mid_run: impl FnOnce(&AtomicUsize),
) -> (BTreeSet<u64>, BTreeSet<u64>, Duration, u64) {
    let progress = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|k| {
            let mut cfg = config(dsn, &format!("replica-{k}"));
            cfg.lease_ms = lease_ms;
            cfg.heartbeat_ms = lease_ms / 5;
            let progress = progress.clone();
            std::thread::spawn(move || {
                let r = PgReplica::start(cfg).unwrap();
                let (a, rel, r) = replica_worker(r, 1000 + k as u64, calls, &progress);
                let conflicts = r.conflicts();
                r.shutdown().unwrap();
                (a, rel, conflicts)
            })
        })
        .collect();
    mid_run(&progress);
    let mut acked = BTreeSet::new();
    let mut released = BTreeSet::new();
    let mut conflicts = 0;
    for h in handles {
        let (a, rel, c) = h.join().unwrap();
        acked.extend(a);
        released.extend(rel);
        conflicts += c;
    }
    (acked, released, started.elapsed(), conflicts)
}

fn calls_per_replica() -> usize {
    std::env::var("ATOM_PG_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

#[test]
fn three_replicas_share_one_fleet_without_over_commit() {
    let dsn = fresh_db("atom_three");
    let mut setup = PgReplica::start(config(&dsn, "setup")).unwrap();
    setup_fleet(&mut setup, 16);
    let calls = calls_per_replica();
    let (acked, released, took, conflicts) = run_replicas(&dsn, 3, calls, 5_000, |_| {});
    assert_eq!(
        acked.len(),
        3 * calls,
        "every call acknowledged a distinct request"
    );
    // Drain what capacity allows now, then check.
    while setup.drain(500).unwrap().placed > 0 {}
    check_acknowledged(&dsn, &acked, &released);
    let (placed, queued) = check_invariants(&dsn);
    let mut c = admin(&dsn);
    let total: i64 = c
        .query_one("SELECT count(*) FROM nf_jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(total as usize, acked.len(), "no request lost or duplicated");
    // The tight quota of t0 binds: it holds exactly what its quota allows at most, and some of
    // its work waits for quota.
    let t0: i64 = c
        .query_one(
            "SELECT used_gpu_milli FROM nf_quotas WHERE tenant_id = 't0'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(t0 <= 12_000);
    let t0_quota: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_jobs WHERE tenant_id = 't0' AND status = 'queued' \
             AND queue_reason = 'quota'",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(t0_quota > 0, "t0's quota never bound");
    let placers: i64 = c
        .query_one(
            "SELECT count(DISTINCT replica_id) FROM nf_events WHERE kind = 'placed' \
             AND replica_id LIKE 'replica-%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(placers, 3, "every replica placed work");
    println!(
        "3 replicas x {calls} schedule calls in {:.1} s ({:.0} calls/s): {placed} placed, \
         {queued} queued, {} released, {conflicts} optimistic conflicts retried",
        took.as_secs_f64(),
        (3 * calls) as f64 / took.as_secs_f64(),
        released.len()
    );
    setup.shutdown().unwrap();
}

/// Entry point of a replica child process (used by the SIGKILL test; a no-op otherwise).
#[test]
fn child_replica_process() {
    let Ok(dsn) = std::env::var("ATOM_PG_CHILD_DSN") else {
        return;
    };
    let id = std::env::var("ATOM_PG_CHILD_ID").unwrap();
    let calls: usize = std::env::var("ATOM_PG_CHILD_CALLS")
        .unwrap()
        .parse()
        .unwrap();
    let mut cfg = config(&dsn, &id);
    cfg.lease_ms = 1_500;
    cfg.heartbeat_ms = 250;
    let mut r = PgReplica::start(cfg).unwrap();
    let mut rng = Rng(id.len() as u64 * 7919 + calls as u64);
    let mut done = 0;
    let out = std::io::stdout();
    while done < calls {
        // Accept a batch (each acknowledged on commit), then place it: work in flight.
        let mut batch = Vec::new();
        for _ in 0..50.min(calls - done) {
            let tenant = TENANTS[rng.below(6) as usize];
            let o = r.submit(&random_request(&mut rng, tenant)).unwrap();
            let rid = request_id(&o);
            {
                use std::io::Write;
                let mut l = out.lock();
                writeln!(l, "ACK {} {tenant}", rid.0).unwrap();
                l.flush().unwrap();
            }
            batch.push((tenant, rid));
        }
        for (t, rid) in batch {
            r.place(t, rid).unwrap();
            done += 1;
        }
    }
    r.shutdown().unwrap();
}

#[test]
fn a_killed_replica_process_loses_no_acknowledged_work() {
    let dsn = fresh_db("atom_kill");
    let mut setup = PgReplica::start(config(&dsn, "setup")).unwrap();
    setup_fleet(&mut setup, 12);
    let exe = std::env::current_exe().unwrap();
    let calls = 1_500;
    let mut children: Vec<_> = (0..3)
        .map(|k| {
            Proc::new(&exe)
                .args([
                    "child_replica_process",
                    "--exact",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env("ATOM_PG_CHILD_DSN", &dsn)
                .env("ATOM_PG_CHILD_ID", format!("proc-{k}"))
                .env("ATOM_PG_CHILD_CALLS", calls.to_string())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let acked = Arc::new(Mutex::new(BTreeSet::new()));
    let killed = Arc::new(AtomicBool::new(false));
    let held_at_kill = Arc::new(Mutex::new(0i64));
    let mut readers = Vec::new();
    for (k, child) in children.iter_mut().enumerate() {
        let stdout = child.stdout.take().unwrap();
        let acked = acked.clone();
        let pid = child.id();
        let killed = killed.clone();
        let held_at_kill = held_at_kill.clone();
        let dsn = dsn.clone();
        readers.push(std::thread::spawn(move || {
            let mut n = 0;
            for line in BufReader::new(stdout).lines() {
                let line = line.unwrap();
                // libtest's "test child_replica_process ... " may precede the first line.
                let Some(rest) = line.find("ACK ").map(|at| &line[at + 4..]) else {
                    continue;
                };
                let id: u64 = rest.split(' ').next().unwrap().parse().unwrap();
                acked.lock().unwrap().insert(id);
                n += 1;
                // Mid-way through its third batch: 25 accepted requests of it are in flight.
                if k == 0 && n == 125 {
                    let ok = Proc::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status()
                        .unwrap()
                        .success();
                    assert!(ok);
                    killed.store(true, Ordering::SeqCst);
                    // Its lease (1.5 s) is still valid: the work it held is still marked as its.
                    let held: i64 = admin(&dsn)
                        .query_one(
                            "SELECT count(*) FROM nf_jobs WHERE claimed_by = 'proc-0'",
                            &[],
                        )
                        .unwrap()
                        .get(0);
                    *held_at_kill.lock().unwrap() = held;
                }
            }
            n
        }));
    }
    let counts: Vec<usize> = readers.into_iter().map(|h| h.join().unwrap()).collect();
    let statuses: Vec<_> = children.iter_mut().map(|c| c.wait().unwrap()).collect();
    assert!(killed.load(Ordering::SeqCst));
    assert!(!statuses[0].success(), "replica 0 was killed");
    assert!(statuses[1].success() && statuses[2].success());
    assert_eq!(counts[1], calls);
    assert_eq!(counts[2], calls);
    let acked = acked.lock().unwrap().clone();
    let mut c = admin(&dsn);
    let held = *held_at_kill.lock().unwrap();
    assert!(held > 0, "the killed replica held accepted work in flight");
    // Recovery happens in whichever replica drains (or shuts down) first after the lease expired.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        setup.drain(1_000).unwrap();
        let left: i64 = c
            .query_one(
                "SELECT count(*) FROM nf_jobs WHERE claimed_by = 'proc-0'",
                &[],
            )
            .unwrap()
            .get(0);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "proc-0's work never recovered");
    }
    // Every recovered job was then tried: placed or queued with a reason, none in limbo.
    let limbo: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_jobs WHERE status = 'queued' AND attempts = 0",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(limbo, 0, "accepted jobs never tried");
    check_acknowledged(&dsn, &acked, &BTreeSet::new());
    check_invariants(&dsn);
    let recovered_events: i64 = c
        .query_one(
            "SELECT count(*) FROM nf_events WHERE kind = 'recovered'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(recovered_events, held);
    setup.shutdown().unwrap();
}

fn pg_ctl_restart() {
    let data = std::env::var("ATOM_PG_DATA")
        .expect("ATOM_PG_DATA is not set: run this suite with `make test-postgres`");
    let bin = std::env::var("ATOM_PG_BIN").expect("ATOM_PG_BIN");
    let runas = std::env::var("ATOM_PG_RUNAS").unwrap_or_default();
    let pg_ctl = format!("{bin}/pg_ctl");
    let args = ["-D", &data, "-m", "fast", "-w", "-t", "60", "restart"];
    let status = if runas.is_empty() {
        Proc::new(&pg_ctl).args(args).stdout(Stdio::null()).status()
    } else {
        Proc::new("runuser")
            .args(["-u", &runas, "--", &pg_ctl])
            .args(args)
            .stdout(Stdio::null())
            .status()
    }
    .unwrap();
    assert!(status.success(), "pg_ctl restart failed");
}

#[test]
fn replicas_reconnect_after_a_postgres_restart_and_lose_nothing() {
    let dsn = fresh_db("atom_restart");
    let mut setup = PgReplica::start(config(&dsn, "setup")).unwrap();
    setup_fleet(&mut setup, 12);
    drop(setup);
    let calls = 1_500;
    let restarted = Arc::new(AtomicBool::new(false));
    let flag = restarted.clone();
    let (acked, released, _, _) = run_replicas(&dsn, 3, calls, 20_000, |progress| {
        while progress.load(Ordering::Relaxed) < 1_500 {
            std::thread::sleep(Duration::from_millis(20));
        }
        pg_ctl_restart();
        flag.store(true, Ordering::SeqCst);
    });
    assert!(restarted.load(Ordering::SeqCst));
    assert_eq!(acked.len(), 3 * calls);
    check_acknowledged(&dsn, &acked, &released);
    check_invariants(&dsn);
    let mut c = admin(&dsn);
    let total: i64 = c
        .query_one("SELECT count(*) FROM nf_jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(total as usize, acked.len());
}
