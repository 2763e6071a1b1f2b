//! Job streams for the simulator: seeded Poisson arrivals, the Azure LLM inference trace, or an
//! explicit list; and sampling of duration distributions.

use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::plan::{Dist, JobKind, Workload};
use crate::error::{FabricError, Result};

/// One job to submit.
#[derive(Debug, Clone, PartialEq)]
pub struct JobSpec {
    /// Arrival (virtual ms).
    pub at_ms: u64,
    /// Kind.
    pub kind: JobKind,
    /// Tenant.
    pub tenant: String,
    /// Node work of the neural stage (ms at speed factor 1; 0 for quantum jobs).
    pub node_ms: u64,
}

/// A sample of `d` in whole milliseconds.
pub fn sample(d: &Dist, rng: &mut ChaCha8Rng) -> u64 {
    let v = match *d {
        Dist::Constant(v) => return v,
        Dist::Uniform(lo, hi) => return rng.gen_range(lo..=hi),
        Dist::Exponential(mean) => {
            let u: f64 = rng.r#gen::<f64>();
            -(mean as f64) * (1.0 - u).ln()
        }
        Dist::LogNormal(median, sigma) => {
            // Box–Muller: u1 in (0, 1] so the log is finite.
            let u1: f64 = 1.0 - rng.r#gen::<f64>();
            let u2: f64 = rng.r#gen::<f64>();
            let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
            median as f64 * (sigma * z).exp()
        }
    };
    if v.is_finite() {
        v.round().clamp(0.0, 1e12) as u64
    } else {
        0
    }
}

/// The jobs of a workload arriving before `duration_ms`, in arrival order.
pub fn generate(w: &Workload, duration_ms: u64, rng: &mut ChaCha8Rng) -> Result<Vec<JobSpec>> {
    match w {
        Workload::Seeded {
            rate_per_s,
            mix,
            tenants,
            neural,
        } => {
            let mut out = Vec::new();
            let mut t = 0.0f64;
            let mean_gap_ms = 1000.0 / rate_per_s;
            loop {
                let u: f64 = rng.r#gen::<f64>();
                t += -mean_gap_ms * (1.0 - u).ln();
                if t >= duration_ms as f64 {
                    break;
                }
                let k: f64 = rng.r#gen::<f64>();
                let kind = if k < mix[0] {
                    JobKind::Neural
                } else if k < mix[1] {
                    JobKind::Quantum
                } else {
                    JobKind::Hybrid
                };
                let tenant = tenants[rng.gen_range(0..tenants.len())].clone();
                let node_ms = if kind == JobKind::Quantum {
                    0
                } else {
                    sample(neural, rng).max(1)
                };
                out.push(JobSpec {
                    at_ms: t as u64,
                    kind,
                    tenant,
                    node_ms,
                });
            }
            Ok(out)
        }
        Workload::Azure {
            path,
            prefill_ms_per_token,
            decode_ms_per_token,
            time_scale,
            limit,
            tenants,
            hybrid_share,
        } => {
            let file = path.display().to_string();
            let text = std::fs::read_to_string(path).map_err(|source| FabricError::Io {
                op: "read trace",
                path: file.clone(),
                source,
            })?;
            let rows = parse_azure(&text, &file, *limit)?;
            let mut out = Vec::new();
            for (offset_ms, ctx, gen_tokens) in rows {
                let at = (offset_ms as f64 * time_scale) as u64;
                if at >= duration_ms {
                    break;
                }
                let node_ms = (ctx as f64 * prefill_ms_per_token
                    + gen_tokens as f64 * decode_ms_per_token)
                    .round()
                    .max(1.0) as u64;
                let hybrid = *hybrid_share > 0.0 && rng.r#gen::<f64>() < *hybrid_share;
                let tenant = tenants[rng.gen_range(0..tenants.len())].clone();
                out.push(JobSpec {
                    at_ms: at,
                    kind: if hybrid {
                        JobKind::Hybrid
                    } else {
                        JobKind::Neural
                    },
                    tenant,
                    node_ms,
                });
            }
            Ok(out)
        }
        Workload::Jobs(list) => Ok(list
            .iter()
            .filter(|j| j.0 < duration_ms)
            .map(|(at, kind, tenant, ms)| JobSpec {
                at_ms: *at,
                kind: *kind,
                tenant: tenant.clone(),
                node_ms: if *kind == JobKind::Quantum { 0 } else { *ms },
            })
            .collect()),
    }
}

/// Days since 1970-01-01 of a civil date (proleptic Gregorian).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses `YYYY-MM-DD HH:MM:SS[.fraction]` into milliseconds since the epoch.
fn parse_timestamp(s: &str) -> Option<i64> {
    let (date, time) = s.trim().split_once(' ')?;
    let mut d = date.split('-');
    let (y, mo, da): (i64, i64, i64) = (
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
        d.next()?.parse().ok()?,
    );
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) {
        return None;
    }
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.split(':');
    let (h, mi, se): (i64, i64, i64) = (
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
        t.next()?.parse().ok()?,
    );
    if h > 23 || mi > 59 || se > 60 {
        return None;
    }
    let mut ms = 0i64;
    for (i, c) in frac.chars().take(3).enumerate() {
        let dgt = c.to_digit(10)? as i64;
        ms += dgt * [100, 10, 1][i];
    }
    if !frac.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    Some(((days_from_civil(y, mo, da) * 24 + h) * 60 + mi) * 60_000 + se * 1000 + ms)
}

/// Parses the Azure LLM inference trace (`TIMESTAMP,ContextTokens,GeneratedTokens`) into
/// (ms since the first row, context tokens, generated tokens), sorted by time.
pub fn parse_azure(text: &str, file: &str, limit: Option<usize>) -> Result<Vec<(u64, u64, u64)>> {
    let err = |line: usize, detail: String| FabricError::Trace {
        file: file.to_string(),
        line,
        detail,
    };
    let mut lines = text.lines().enumerate();
    let header = lines
        .next()
        .ok_or_else(|| err(1, "empty file".into()))?
        .1
        .trim();
    if header != "TIMESTAMP,ContextTokens,GeneratedTokens" {
        return Err(err(
            1,
            format!("header {header:?}, expected TIMESTAMP,ContextTokens,GeneratedTokens"),
        ));
    }
    let mut rows: Vec<(i64, u64, u64)> = Vec::new();
    for (i, line) in lines {
        if limit.is_some_and(|l| rows.len() >= l) {
            break;
        }
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        let mut f = line.split(',');
        let (ts, c, g) = match (f.next(), f.next(), f.next(), f.next()) {
            (Some(a), Some(b), Some(c), None) => (a, b, c),
            _ => return Err(err(i + 1, format!("{line:?}: expected 3 fields"))),
        };
        let t = parse_timestamp(ts).ok_or_else(|| err(i + 1, format!("bad TIMESTAMP {ts:?}")))?;
        let c: u64 = c
            .trim()
            .parse()
            .map_err(|_| err(i + 1, format!("bad ContextTokens {c:?}")))?;
        let g: u64 = g
            .trim()
            .parse()
            .map_err(|_| err(i + 1, format!("bad GeneratedTokens {g:?}")))?;
        rows.push((t, c, g));
    }
    if rows.is_empty() {
        return Err(err(2, "no rows".into()));
    }
    rows.sort_by_key(|r| r.0);
    let t0 = rows[0].0;
    Ok(rows
        .into_iter()
        .map(|(t, c, g)| ((t - t0) as u64, c, g))
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_parse_across_midnight() {
        let a = parse_timestamp("2023-11-16 23:59:59.9000000").unwrap();
        let b = parse_timestamp("2023-11-17 00:00:00.1500000").unwrap();
        assert_eq!(b - a, 250);
        assert_eq!(parse_timestamp("1970-01-01 00:00:01"), Some(1000));
        assert!(parse_timestamp("2023-13-01 00:00:00").is_none());
    }

    #[test]
    fn azure_rows_are_offsets_from_the_first() {
        let t = "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n2023-11-16 18:15:50.9951690,396,109\n";
        let r = parse_azure(t, "x", None).unwrap();
        assert_eq!(r, vec![(0, 374, 44), (4315, 396, 109)]);
        assert!(parse_azure("a,b\n", "x", None).is_err());
        let e = parse_azure(
            "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,x,1\n",
            "x",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
