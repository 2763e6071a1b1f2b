//! Where models come from: a `file://` directory or an `https://` server, both laid out as
//! `{store}/{model_id}/{version}/` with the signed manifest `model.sig` beside the files.

use super::ModelStoreError;
use atom_policy::config::{Mode, PqcMode};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A body being downloaded.
pub(crate) struct Opened {
    pub reader: Box<dyn Read + Send>,
    /// Length of what `reader` yields, when the source says.
    pub remaining_len: Option<u64>,
    /// The source ignored the requested offset and sends from byte 0.
    pub restarted: bool,
}

/// A model store backend.
pub(crate) trait Source: Send + Sync {
    /// Human-readable location.
    fn describe(&self) -> String;
    /// Opens `rel` (a `/`-separated path below the store root) from byte `offset`.
    fn open(&self, rel: &str, offset: u64) -> Result<Opened, ModelStoreError>;
    /// The TLS key-exchange group used, when known.
    fn transport(&self) -> Option<&'static str> {
        None
    }
}

/// `file://DIR`
pub(crate) struct FileSource {
    root: PathBuf,
}

impl FileSource {
    pub fn new(root: PathBuf) -> Self {
        Self { root }
    }
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("file://{}", self.root.display())
    }

    fn open(&self, rel: &str, offset: u64) -> Result<Opened, ModelStoreError> {
        let path = self.root.join(rel);
        let mut f = std::fs::File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                ModelStoreError::NotFound {
                    location: path.display().to_string(),
                }
            } else {
                ModelStoreError::Io {
                    op: "open",
                    path: path.clone(),
                    source: e,
                }
            }
        })?;
        let len = f
            .metadata()
            .map_err(|e| ModelStoreError::Io {
                op: "stat",
                path: path.clone(),
                source: e,
            })?
            .len();
        let offset = offset.min(len);
        f.seek(SeekFrom::Start(offset))
            .map_err(|e| ModelStoreError::Io {
                op: "seek",
                path: path.clone(),
                source: e,
            })?;
        Ok(Opened {
            reader: Box::new(f),
            remaining_len: Some(len - offset),
            restarted: false,
        })
    }
}

/// `https://host/prefix`
pub(crate) struct HttpsSource {
    base: String,
    agent: ureq::Agent,
    hybrid: bool,
}

/// Percent-encodes a URL path segment or query value (RFC 3986: unreserved characters stay).
pub(crate) fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl HttpsSource {
    pub fn new(
        base: &str,
        mode: Mode,
        ca_pem: Option<&[u8]>,
        timeout: Duration,
    ) -> Result<Self, ModelStoreError> {
        let provider = Arc::new(atom_policy::handshake::tls_provider(mode));
        let roots = match ca_pem {
            Some(pem) => {
                let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(pem)
                    .map(|c: Result<rustls::pki_types::CertificateDer<'static>, _>| {
                        c.map(|c| ureq::tls::Certificate::from_der(c.as_ref()).to_owned())
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| ModelStoreError::Transport {
                        url: base.to_owned(),
                        reason: format!("CA certificate PEM: {e}"),
                    })?;
                ureq::tls::RootCerts::new_with_certs(&certs)
            }
            None => ureq::tls::RootCerts::WebPki,
        };
        let tls = ureq::tls::TlsConfig::builder()
            .provider(ureq::tls::TlsProvider::Rustls)
            .root_certs(roots)
            .unversioned_rustls_crypto_provider(provider)
            .build();
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .timeout_global(Some(timeout))
            .https_only(true)
            .build()
            .new_agent();
        Ok(Self {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            hybrid: mode.pqc == PqcMode::Hybrid,
        })
    }
}

impl Source for HttpsSource {
    fn describe(&self) -> String {
        self.base.clone()
    }

    fn open(&self, rel: &str, offset: u64) -> Result<Opened, ModelStoreError> {
        let path: Vec<String> = rel.split('/').map(percent_encode).collect();
        let url = format!("{}/{}", self.base, path.join("/"));
        let mut req = self.agent.get(&url);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let resp = req.call().map_err(|e| match e {
            ureq::Error::StatusCode(404) => ModelStoreError::NotFound {
                location: url.clone(),
            },
            ureq::Error::StatusCode(status) => ModelStoreError::Http {
                url: url.clone(),
                status,
            },
            other => ModelStoreError::Transport {
                url: url.clone(),
                reason: other.to_string(),
            },
        })?;
        let restarted = offset > 0 && resp.status().as_u16() != 206;
        let remaining_len = resp.body().content_length();
        Ok(Opened {
            reader: Box::new(resp.into_body().into_reader()),
            remaining_len,
            restarted,
        })
    }

    fn transport(&self) -> Option<&'static str> {
        // Under hybrid the provider offers X25519MLKEM768 only, so any connection that succeeded
        // negotiated it.
        self.hybrid.then_some(atom_policy::handshake::GROUP_NAME)
    }
}

#[cfg(test)]
mod tests {
    use super::percent_encode;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(percent_encode("model v1.bin"), "model%20v1.bin");
        assert_eq!(percent_encode("a~b_c-d.e"), "a~b_c-d.e");
        assert_eq!(percent_encode("ü?#"), "%C3%BC%3F%23");
    }
}
