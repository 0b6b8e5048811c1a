//! A tiny token server for docker-registry's `auth: token` scheme: it checks
//! HTTP basic credentials and issues RS256 JWTs the registry verifies against
//! a self-signed certificate listed in its `rootcertbundle`.
//!
//! docker-registry 2.8 finds the verification key through the JWS `kid`
//! header, which must be the libtrust key id of a certificate's public key:
//! SHA-256 over the DER SubjectPublicKeyInfo, first 240 bits, base32, in
//! 4-character groups joined by ':'.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use openssl::asn1::Asn1Time;
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use openssl::x509::{X509Builder, X509NameBuilder};

pub const SERVICE: &str = "kos-test";
pub const ISSUER: &str = "kos-test-issuer";

/// The server never outlives this, even if a test forgets to drop it.
const LIFETIME: Duration = Duration::from_secs(300);

/// One account: its password and the actions it may be granted on any
/// repository.
#[derive(Clone)]
pub struct Account {
    pub password: String,
    pub actions: Vec<String>,
}

/// What the server answered to one token request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A token was issued for `subject` ("" when anonymous) with these
    /// (repository, actions) grants.
    Issued {
        subject: String,
        granted: Vec<(String, Vec<String>)>,
    },
    /// Credentials were sent and were wrong.
    Refused { user: String },
}

struct Signing {
    key: PKey<Private>,
    kid: String,
}

/// A token server on a free loopback port, stopped on drop.
pub struct TokenServer {
    pub addr: String,
    pub cert: PathBuf,
    signing: Arc<Signing>,
    pub log: Arc<Mutex<Vec<Outcome>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TokenServer {
    /// Starts the server; the key's certificate is written to `dir/cert.pem`.
    pub fn start(dir: &Path, accounts: BTreeMap<String, Account>) -> Self {
        let rsa = Rsa::generate(2048).expect("rsa key");
        let key = PKey::from_rsa(rsa).expect("pkey");
        let cert = dir.join("token-cert.pem");
        std::fs::write(&cert, self_signed(&key)).expect("write cert");
        let kid = libtrust_key_id(&key.public_key_to_der().expect("spki der"));
        let signing = Arc::new(Signing { key, kid });

        let listener = TcpListener::bind("127.0.0.1:0").expect("bind token server");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("addr").to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let log = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, log, signing) = (stop.clone(), log.clone(), signing.clone());
            std::thread::spawn(move || serve(listener, &stop, &log, &signing, &accounts))
        };
        TokenServer {
            addr,
            cert,
            signing,
            log,
            stop,
            thread: Some(thread),
        }
    }

    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The registry's `auth:` section trusting this server.
    pub fn registry_auth_yaml(&self) -> String {
        format!(
            "auth:\n  token:\n    realm: {}\n    service: {SERVICE}\n    issuer: {ISSUER}\n    rootcertbundle: {}\n",
            self.realm(),
            self.cert.display()
        )
    }

    /// Signs a token directly (bypassing the credential check), for tests
    /// that hand the client a ready-made bearer token.
    pub fn issue(&self, subject: &str, grants: &[(String, Vec<String>)]) -> String {
        sign_token(&self.signing, subject, grants)
    }

    /// Asks the server for a token over HTTP, as a client would; returns
    /// the HTTP status and the token when one was issued.
    pub fn fetch(&self, creds: Option<(&str, &str)>, scope: &str) -> (u16, Option<String>) {
        let mut s = TcpStream::connect(&self.addr).expect("connect token server");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut req =
            format!(
            "GET /token?service={SERVICE}&scope={} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n",
            scope.replace(':', "%3A").replace('/', "%2F").replace(',', "%2C"),
            self.addr
        );
        if let Some((u, p)) = creds {
            req.push_str(&format!(
                "Authorization: Basic {}\r\n",
                STANDARD.encode(format!("{u}:{p}"))
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).expect("send");
        let mut resp = String::new();
        s.read_to_string(&mut resp).expect("read");
        let status: u16 = resp
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .expect("status");
        let body = resp.split("\r\n\r\n").nth(1).unwrap_or("");
        let token = serde_json::from_str::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["token"].as_str().map(str::to_string));
        (status, token)
    }

    pub fn outcomes(&self) -> Vec<Outcome> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn self_signed(key: &PKey<Private>) -> Vec<u8> {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", ISSUER).expect("cn");
    let name = name.build();
    let mut b = X509Builder::new().expect("x509");
    b.set_version(2).expect("version");
    let serial = BigNum::from_u32(1)
        .and_then(|n| n.to_asn1_integer())
        .expect("serial");
    b.set_serial_number(&serial).expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(&name).expect("issuer");
    b.set_pubkey(key).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(1).expect("time"))
        .expect("not after");
    b.sign(key, MessageDigest::sha256()).expect("sign cert");
    b.build().to_pem().expect("pem")
}

/// libtrust's key id for a DER SubjectPublicKeyInfo.
pub fn libtrust_key_id(spki_der: &[u8]) -> String {
    let digest = openssl::sha::sha256(spki_der);
    let b32 = base32(&digest[..30]);
    b32.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(":")
}

/// RFC 4648 base32 without padding.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    out
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn sign_token(signing: &Signing, subject: &str, grants: &[(String, Vec<String>)]) -> String {
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "kid": signing.kid});
    let now = now();
    let access: Vec<serde_json::Value> = grants
        .iter()
        .map(|(name, actions)| serde_json::json!({"type": "repository", "name": name, "actions": actions}))
        .collect();
    let claims = serde_json::json!({
        "iss": ISSUER,
        "sub": subject,
        "aud": SERVICE,
        "exp": now + 300,
        "nbf": now.saturating_sub(10),
        "iat": now,
        "jti": super::unique("jti"),
        "access": access,
    });
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut signer = Signer::new(MessageDigest::sha256(), &signing.key).expect("signer");
    signer.update(input.as_bytes()).expect("sign");
    let sig = signer.sign_to_vec().expect("sign");
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn serve(
    listener: TcpListener,
    stop: &AtomicBool,
    log: &Mutex<Vec<Outcome>>,
    signing: &Signing,
    accounts: &BTreeMap<String, Account>,
) {
    let deadline = Instant::now() + LIFETIME;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        match listener.accept() {
            Ok((conn, _)) => {
                // A broken client connection only affects that request.
                let _ = handle(conn, log, signing, accounts);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn handle(
    conn: TcpStream,
    log: &Mutex<Vec<Outcome>>,
    signing: &Signing,
    accounts: &BTreeMap<String, Account>,
) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut authorization = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("authorization") {
                authorization = Some(value.trim().to_string());
            }
        }
    }
    let target = request_line.split(' ').nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut conn = conn;
    if path != "/token" {
        return respond(&mut conn, 404, "{\"errors\":[{\"code\":\"NOT_FOUND\"}]}");
    }
    let mut service_ok = false;
    let mut requested: Vec<(String, Vec<String>)> = Vec::new();
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = percent_decode(v);
        match k {
            "service" => service_ok = v == SERVICE,
            "scope" => {
                // repository:<name>:<actions>; the name may hold ':' (ports
                // never appear in it, but keep to the last separator anyway).
                let mut parts = v.rsplitn(2, ':');
                let actions = parts.next().unwrap_or("");
                if let Some(rest) = parts.next() {
                    if let Some(name) = rest.strip_prefix("repository:") {
                        requested.push((
                            name.to_string(),
                            actions.split(',').map(str::to_string).collect(),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    if !service_ok {
        return respond(
            &mut conn,
            400,
            "{\"errors\":[{\"code\":\"DENIED\",\"message\":\"unknown service\"}]}",
        );
    }

    let user = match authorization
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
    {
        None => None,
        Some(b64) => {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|d| String::from_utf8(d).ok())
                .unwrap_or_default();
            let (u, p) = decoded.split_once(':').unwrap_or((&decoded, ""));
            match accounts.get(u) {
                Some(acct) if acct.password == p => Some((u.to_string(), acct.clone())),
                _ => {
                    log.lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Outcome::Refused {
                            user: u.to_string(),
                        });
                    return respond(
                        &mut conn,
                        401,
                        "{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"invalid username or password\"}]}",
                    );
                }
            }
        }
    };
    // Anonymous callers get a token with no access, as public token
    // services do; the registry then refuses them itself.
    let (subject, granted) = match user {
        None => (String::new(), Vec::new()),
        Some((u, acct)) => {
            let granted = requested
                .into_iter()
                .map(|(name, actions)| {
                    let allowed: Vec<String> = actions
                        .into_iter()
                        .filter(|a| acct.actions.contains(a))
                        .collect();
                    (name, allowed)
                })
                .filter(|(_, a)| !a.is_empty())
                .collect();
            (u, granted)
        }
    };
    let token = sign_token(signing, &subject, &granted);
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Outcome::Issued { subject, granted });
    let body = serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": 300,
    });
    respond(&mut conn, 200, &body.to_string())
}

fn respond(conn: &mut TcpStream, status: u16, body: &str) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        _ => "Not Found",
    };
    let mut head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if status == 401 {
        head.push_str(&format!("WWW-Authenticate: Basic realm=\"{SERVICE}\"\r\n"));
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())?;
    conn.flush()
}

pub fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match std::str::from_utf8(&b[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                Some(v) => {
                    out.push(v);
                    i += 3;
                    continue;
                }
                None => out.push(b'%'),
            },
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
