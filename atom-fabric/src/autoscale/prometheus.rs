//! Reading autoscaler inputs from a Prometheus server (`PROM_URL`) through its HTTP query API
//! (`GET /api/v1/query?query=...`).

use super::Observation;
use serde::Deserialize;
use std::time::Duration;

/// Why a query failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PromError {
    /// The server could not be reached or answered with an HTTP error.
    #[error("prometheus at {url}: {reason}")]
    Transport {
        /// The query URL.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The answer is not the API's JSON, or reports an error.
    #[error("prometheus query {query:?}: {reason}")]
    Query {
        /// The PromQL query.
        query: String,
        /// What was wrong.
        reason: String,
    },
}

#[derive(Deserialize)]
struct Response {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
#[serde(tag = "resultType", content = "result", rename_all = "lowercase")]
enum Data {
    Vector(Vec<Sample>),
    Scalar((f64, String)),
    /// `matrix` or `string`: not what an instant query for a number returns.
    #[serde(other)]
    Other,
}

#[derive(Deserialize)]
struct Sample {
    value: (f64, String),
}

/// A client of one Prometheus server.
#[derive(Debug, Clone)]
pub struct PromClient {
    base: String,
    agent: ureq::Agent,
}

fn parse_value(s: &str) -> Option<f64> {
    match s {
        "NaN" => None,
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        v => v.parse().ok(),
    }
}

impl PromClient {
    /// A client for `base` (e.g. `http://127.0.0.1:9090`).
    pub fn new(base: &str, timeout: Duration) -> Self {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .build()
            .new_agent();
        Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
        }
    }

    /// Runs an instant query; returns the sum of the result vector (or the scalar), `None` when
    /// the result is empty or NaN.
    pub fn query_sum(&self, query: &str) -> Result<Option<f64>, PromError> {
        let url = format!(
            "{}/api/v1/query?query={}",
            self.base,
            crate::model_store::percent_encode(query)
        );
        let mut resp = self
            .agent
            .get(&url)
            .call()
            .map_err(|e| PromError::Transport {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(16 << 20)
            .read_to_string()
            .map_err(|e| PromError::Transport {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        let bad = |reason: String| PromError::Query {
            query: query.to_owned(),
            reason,
        };
        let parsed: Response = serde_json::from_str(&body)
            .map_err(|e| bad(format!("HTTP {status}, not the query API's JSON: {e}")))?;
        if parsed.status != "success" {
            return Err(bad(format!(
                "{}: {}",
                parsed.error_type.unwrap_or_default(),
                parsed.error.unwrap_or_default()
            )));
        }
        match parsed.data {
            Some(Data::Vector(samples)) => {
                let values: Vec<f64> = samples
                    .iter()
                    .filter_map(|s| parse_value(&s.value.1))
                    .collect();
                Ok((!values.is_empty()).then(|| values.iter().sum()))
            }
            Some(Data::Scalar((_, v))) => Ok(parse_value(&v)),
            Some(_) => Err(bad("expected an instant vector or scalar".into())),
            None => Err(bad("no data".into())),
        }
    }

    /// An observation from two queries: concurrency (in-flight + queued) and p95 latency in
    /// seconds (converted to ms), at time `t`.
    pub fn observe(
        &self,
        t: f64,
        concurrency_query: &str,
        p95_seconds_query: Option<&str>,
    ) -> Result<Observation, PromError> {
        let concurrency = self.query_sum(concurrency_query)?.unwrap_or(0.0);
        let p95_latency_ms = match p95_seconds_query {
            Some(q) => self.query_sum(q)?.map(|s| s * 1e3),
            None => None,
        };
        Ok(Observation {
            t,
            concurrency,
            p95_latency_ms,
            offered_load: None,
        })
    }
}
