//! Sending notifications: webhooks (an HTTPS POST of the signed JSON body, see
//! `domain::notify`) and e-mail over SMTP (plain, or STARTTLS). The outbox and its retries are
//! in the store; the loop that drives them is `workers::notifier`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};

use crate::domain::notify::{Kind, Notification, body, signature};

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

/// `[notify]`: where notifications go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// The dashboard's address, put in every body (`externalURL`).
    #[serde(default)]
    pub external_url: String,
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    #[serde(default)]
    pub email: Option<EmailConfig>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The channel's name (letters, digits, '-', '_'): the body's `receiver`.
    pub name: String,
    /// https://... (http:// only to a loopback address).
    pub url: String,
    /// The HMAC key (mode 0600, at least 16 characters) the signature header is made with.
    pub secret_file: PathBuf,
    /// Which kinds (deadline_warning, failed, waiting_for_person, seeded, repair_blocked);
    /// empty: all.
    #[serde(default)]
    pub events: Vec<String>,
    /// A CA to trust for the receiver (default: the system's).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// host:port of the SMTP server.
    pub smtp: String,
    pub from: String,
    pub to: Vec<String>,
    /// Upgrade the connection with STARTTLS (the server's certificate checked against the
    /// system's CAs, or `ca_file`).
    #[serde(default)]
    pub starttls: bool,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

fn kinds(events: &[String], field: &str) -> Result<Vec<Kind>, String> {
    if events.is_empty() {
        return Ok(Kind::ALL.to_vec());
    }
    events
        .iter()
        .map(|e| {
            Kind::parse(e).ok_or_else(|| {
                let all: Vec<&str> = Kind::ALL.iter().map(|k| k.as_str()).collect();
                format!("{field}: unknown event {e:?}; one of {}", all.join(", "))
            })
        })
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|a| a.is_loopback())
}

fn roots(ca_file: Option<&Path>) -> Result<rustls::RootCertStore, String> {
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let (certs, _) = seedship_proto::keyfile::read_certs(p).map_err(|e| e.to_string())?;
            for c in certs {
                roots.add(c).map_err(|e| format!("{}: {e}", p.display()))?;
            }
        }
        None => {
            for c in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(c);
            }
        }
    }
    Ok(roots)
}

fn tls_client(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots(ca_file)?)
        .with_no_client_auth())
}

/// A channel ready to send.
pub enum Channel {
    Webhook { name: String, url: String, secret: Vec<u8>, kinds: Vec<Kind>, client: reqwest::Client },
    Email { cfg: EmailConfig, kinds: Vec<Kind>, tls: Option<Arc<rustls::ClientConfig>> },
}

impl Channel {
    pub fn name(&self) -> &str {
        match self {
            Channel::Webhook { name, .. } => name,
            Channel::Email { .. } => "email",
        }
    }

    pub fn kinds(&self) -> &[Kind] {
        match self {
            Channel::Webhook { kinds, .. } | Channel::Email { kinds, .. } => kinds,
        }
    }

    /// Sends one notification; `Err` says why (the delivery is retried).
    pub async fn send(&self, n: &Notification, external_url: &str) -> Result<(), String> {
        let doc = body(n, self.name(), external_url);
        match self {
            Channel::Webhook { url, secret, client, .. } => {
                let bytes = serde_json::to_vec(&doc).expect("serializes");
                let ts =
                    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs()
                        as i64;
                let r = client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("user-agent", concat!("seedship-coordinator/", env!("CARGO_PKG_VERSION")))
                    .header("x-seedship-delivery", n.id.to_string())
                    .header("x-seedship-timestamp", ts.to_string())
                    .header("x-seedship-signature", signature(secret, ts, &bytes))
                    .body(bytes)
                    .send()
                    .await
                    .map_err(|e| format!("POST {url}: {}", seedship_proto::client::error_chain(&e)))?;
                if r.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("POST {url}: the receiver answered {}", r.status()))
                }
            }
            Channel::Email { cfg, tls, .. } => {
                let subject = doc["commonAnnotations"]["summary"].as_str().unwrap_or("seedship").to_string();
                let text = format!(
                    "{}\n\n{}\n\nSeed {} (job {}), event {} by {}, {}.\n{}\n\nNotification {}; acknowledge it with `seedctl ack {} --reason ...`.\n",
                    subject,
                    n.reason,
                    n.seed_id,
                    n.job_name,
                    n.event,
                    n.actor,
                    crate::clock::rfc3339(n.created_ms),
                    if external_url.is_empty() { String::new() } else { format!("Dashboard: {external_url}") },
                    n.id,
                    n.id
                );
                tokio::time::timeout(cfg.timeout, smtp_send(cfg, tls.clone(), &subject, &text, n.id))
                    .await
                    .map_err(|_| format!("SMTP {}: no answer within {:?}", cfg.smtp, cfg.timeout))?
            }
        }
    }
}

/// The channels of `[notify]`, checked (names, URLs, secrets, events).
pub fn channels(cfg: &NotifyConfig) -> Result<Vec<Channel>, String> {
    let mut out = Vec::new();
    for w in &cfg.webhook {
        let field = format!("notify.webhook {}", w.name);
        if w.name.is_empty()
            || w.name == "email"
            || !w.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!("{field}: name must be letters, digits, '-' or '_' (and not \"email\")"));
        }
        let u: http::Uri = w.url.parse().map_err(|e| format!("{field}: url {:?}: {e}", w.url))?;
        let host = u.host().unwrap_or_default();
        match u.scheme_str() {
            Some("https") => {}
            Some("http") if is_loopback(host) => {}
            _ => {
                return Err(format!(
                    "{field}: url must be https:// (http:// only to a loopback address), got {:?}",
                    w.url
                ));
            }
        }
        seedship_proto::keyfile::check_private(&w.secret_file).map_err(|e| format!("{field}: {e}"))?;
        let secret = std::fs::read_to_string(&w.secret_file)
            .map_err(|e| format!("{field}: secret_file {}: {e}", w.secret_file.display()))?
            .trim()
            .as_bytes()
            .to_vec();
        if secret.len() < 16 {
            return Err(format!("{field}: the secret in {} must be at least 16 characters", w.secret_file.display()));
        }
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls_client(w.ca_file.as_deref())?)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(w.timeout)
            .build()
            .map_err(|e| format!("{field}: {e}"))?;
        out.push(Channel::Webhook {
            name: w.name.clone(),
            url: w.url.clone(),
            secret,
            kinds: kinds(&w.events, &field)?,
            client,
        });
    }
    if let Some(e) = &cfg.email {
        if e.to.is_empty() || e.from.is_empty() || !e.smtp.contains(':') {
            return Err("notify.email: give smtp (host:port), from and at least one address in to".into());
        }
        for a in e.to.iter().chain([&e.from]) {
            if !a.contains('@') || a.contains(['\r', '\n', '<', '>']) {
                return Err(format!("notify.email: {a:?} is not an e-mail address"));
            }
        }
        let tls = if e.starttls { Some(Arc::new(tls_client(e.ca_file.as_deref())?)) } else { None };
        out.push(Channel::Email { cfg: e.clone(), kinds: kinds(&e.events, "notify.email")?, tls });
    }
    Ok(out)
}

/// Reads one SMTP reply (multi-line too); `Err` unless its code is `want`.
async fn reply<R: tokio::io::AsyncBufRead + Unpin>(r: &mut R, want: &str) -> Result<String, String> {
    let mut all = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).await.map_err(|e| format!("SMTP: {e}"))? == 0 {
            return Err("SMTP: the server closed the connection".into());
        }
        all.push_str(&line);
        if line.len() < 4 || line.as_bytes()[3] != b'-' {
            break;
        }
    }
    if all.starts_with(want) { Ok(all) } else { Err(format!("SMTP: expected {want}, the server said {}", all.trim())) }
}

async fn say<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> Result<(), String> {
    w.write_all(format!("{line}\r\n").as_bytes()).await.map_err(|e| format!("SMTP: {e}"))?;
    w.flush().await.map_err(|e| format!("SMTP: {e}"))
}

/// The message: headers, then the text with lines starting with "." doubled (RFC 5321).
fn message(cfg: &EmailConfig, subject: &str, text: &str, id: i64) -> String {
    let date = httpdate_now();
    let mut m = format!(
        "From: {}\r\nTo: {}\r\nSubject: [seedship] {}\r\nDate: {date}\r\nMessage-ID: <notification-{id}.{}@seedship>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        cfg.from,
        cfg.to.join(", "),
        subject.replace(['\r', '\n'], " "),
        std::process::id()
    );
    for line in text.lines() {
        if line.starts_with('.') {
            m.push('.');
        }
        m.push_str(line);
        m.push_str("\r\n");
    }
    m
}

fn httpdate_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|_| "Thu, 01 Jan 1970 00:00:00 +0000".into())
}

async fn smtp_send(
    cfg: &EmailConfig,
    tls: Option<Arc<rustls::ClientConfig>>,
    subject: &str,
    text: &str,
    id: i64,
) -> Result<(), String> {
    let tcp = tokio::net::TcpStream::connect(&cfg.smtp).await.map_err(|e| format!("SMTP {}: {e}", cfg.smtp))?;
    let (rd, mut wr) = tokio::io::split(tcp);
    let mut rd = BufReader::new(rd);
    reply(&mut rd, "220").await?;
    say(&mut wr, "EHLO seedship-coordinator").await?;
    reply(&mut rd, "250").await?;
    match tls {
        None => dialogue(&mut rd, &mut wr, cfg, subject, text, id).await,
        Some(tls) => {
            say(&mut wr, "STARTTLS").await?;
            reply(&mut rd, "220").await?;
            let tcp = rd.into_inner().unsplit(wr);
            let host = cfg.smtp.rsplit_once(':').map(|(h, _)| h).unwrap_or(&cfg.smtp).to_string();
            let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| format!("SMTP: {e}"))?;
            let stream = tokio_rustls::TlsConnector::from(tls)
                .connect(name, tcp)
                .await
                .map_err(|e| format!("SMTP STARTTLS with {}: {e}", cfg.smtp))?;
            let (rd, mut wr) = tokio::io::split(stream);
            let mut rd = BufReader::new(rd);
            say(&mut wr, "EHLO seedship-coordinator").await?;
            reply(&mut rd, "250").await?;
            dialogue(&mut rd, &mut wr, cfg, subject, text, id).await
        }
    }
}

async fn dialogue<R, W>(
    rd: &mut R,
    wr: &mut W,
    cfg: &EmailConfig,
    subject: &str,
    text: &str,
    id: i64,
) -> Result<(), String>
where
    R: tokio::io::AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin,
{
    say(wr, &format!("MAIL FROM:<{}>", cfg.from)).await?;
    reply(rd, "250").await?;
    for to in &cfg.to {
        say(wr, &format!("RCPT TO:<{to}>")).await?;
        reply(rd, "25").await?;
    }
    say(wr, "DATA").await?;
    reply(rd, "354").await?;
    wr.write_all(message(cfg, subject, text, id).as_bytes()).await.map_err(|e| format!("SMTP: {e}"))?;
    say(wr, ".").await?;
    reply(rd, "250").await?;
    let _ = say(wr, "QUIT").await;
    Ok(())
}
