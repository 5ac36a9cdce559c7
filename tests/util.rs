//! Helpers shared by the end-to-end tests.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

/// The share-token secret every test server is started with.
pub const SHARE_TOKEN_SECRET: &str = "end-to-end-test-secret-0123";

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// A fixture under `tests/fixtures`.
pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

/// A fresh, empty scratch directory under the target directory's tmp.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir()
        .join("pet-cutout-tests")
        .join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create scratch dir");
    dir
}

/// A workspace binary built by the same `cargo test --workspace` run (cargo builds every
/// member's binaries before it runs any test). Test executables live in `<target>/<profile>/deps`.
pub fn workspace_bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("test executable is in <target>/<profile>/deps");
    let bin = profile_dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        bin.exists(),
        "{} is missing: run the tests with `cargo test --workspace` (or `cargo build -p {name}` first)",
        bin.display()
    );
    bin
}

/// The `gpu-server` binary, with the caller's model choices cleared from its environment.
pub fn gpu_server() -> Command {
    let mut cmd = Command::new(workspace_bin("gpu-server"));
    cmd.env_remove("BACKEND").env_remove("MODEL");
    cmd
}

/// Run a command, panicking with its output if it could not start.
pub fn output(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Mean absolute difference of two same-sized 8-bit greyscale images, in levels.
pub fn mean_abs(a: &image::GrayImage, b: &image::GrayImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let total: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(&x, &y)| u64::from(x.abs_diff(y)))
        .sum();
    total as f64 / a.as_raw().len() as f64
}

/// A `gpu-server serve` process on a free loopback port, killed on drop.
pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    child: std::process::Child,
}

impl Server {
    /// Start the service with local folders for storage under a fresh scratch directory, plus
    /// `args`, and wait until `/ready` answers 200 (at most 60 s).
    pub fn start(name: &str, args: &[&str]) -> Server {
        Server::start_with_env(name, args, &[])
    }

    /// [`Server::start`] with extra environment variables for the server process.
    pub fn start_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = scratch(name);
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            l.local_addr().expect("local addr").port()
        };
        let log = std::fs::File::create(dir.join("server.log")).expect("log file");
        let child = gpu_server()
            .arg("serve")
            .args(["--port", &port.to_string()])
            .args(["--storage-bucket", &dir.join("cache").display().to_string()])
            .args([
                "--customer-storage-bucket",
                &dir.join("shares").display().to_string(),
            ])
            .args(["--share-token-secret", SHARE_TOKEN_SECRET])
            .args(args)
            .env("LOG_FORMAT", "json")
            .envs(env.iter().copied())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start gpu-server serve");
        let server = Server { port, dir, child };
        let t0 = std::time::Instant::now();
        while t0.elapsed() < std::time::Duration::from_secs(60) {
            if server
                .try_request("GET", "/ready", &[], &[])
                .is_ok_and(|r| r.status == 200)
            {
                return server;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("server not ready in 60 s; log:\n{}", server.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Resident memory of the server process, in KiB (Linux).
    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// One HTTP/1.1 request over a fresh connection.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<HttpResponse> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(120)))?;
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.port,
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes())?;
        s.write_all(body)?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        HttpResponse::parse(&raw)
    }

    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> HttpResponse {
        self.try_request(method, path, headers, body)
            .unwrap_or_else(|e| panic!("{method} {path}: {e}\nlog:\n{}", self.log()))
    }

    pub fn get(&self, path: &str) -> HttpResponse {
        self.request("GET", path, &[], &[])
    }

    /// POST a multipart form of (name, filename, bytes) parts.
    pub fn post_form(
        &self,
        path: &str,
        parts: &[(&str, Option<&str>, &[u8])],
        json: bool,
    ) -> HttpResponse {
        let (ctype, body) = multipart(parts);
        let mut headers = vec![("Content-Type", ctype.as_str())];
        if json {
            headers.push(("Accept", "application/json"));
        }
        self.request("POST", path, &headers, &body)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A multipart/form-data body and its content type.
pub fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    multipart_with("e2eBoundary7MA4YWxkTrZu0gW", parts)
}

/// [`multipart`] with the given boundary: `(name, file name if a file, bytes)` per part.
pub fn multipart_with(boundary: &str, parts: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let mut body = Vec::new();
    for (name, filename, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let disposition = match filename {
            Some(f) => format!(
                "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            ),
            None => format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n"),
        };
        body.extend_from_slice(disposition.as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A parsed HTTP response (no chunked encoding: the server sends lengths or closes).
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    fn parse(raw: &[u8]) -> std::io::Result<HttpResponse> {
        let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "malformed response");
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .ok_or_else(bad)?;
        let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad())?;
        let mut lines = head.split("\r\n");
        let status = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let mut body = raw[end + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body).ok_or_else(bad)?;
        }
        Ok(HttpResponse {
            status,
            headers,
            body,
        })
    }

    pub fn header(&self, name: &str) -> &str {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `error.code` of a JSON error body (empty if none).
    pub fn code(&self) -> String {
        let v: serde_json::Value = serde_json::from_slice(&self.body).unwrap_or_default();
        v["error"]["code"].as_str().unwrap_or("").to_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size = usize::from_str_radix(
            std::str::from_utf8(&data[..line_end])
                .ok()?
                .split(';')
                .next()?
                .trim(),
            16,
        )
        .ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}
