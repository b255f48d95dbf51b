//! Real `nats-server` processes for the JetStream tests: one server or a three-server cluster on
//! 127.0.0.1 with free ports and stores in a directory the test owns; stopped when dropped.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `nats-server` binary: `$PATH`, then `/usr/sbin` and `/usr/bin` (Debian installs it in
/// /usr/sbin). The error says how to install it.
pub fn binary() -> Result<PathBuf, String> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs = std::env::split_paths(&path).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")]);
    for d in dirs {
        let p = d.join("nats-server");
        if p.is_file() {
            return Ok(p);
        }
    }
    Err("nats-server not found: install it with `apt-get install nats-server` (the README's ./test does)".into())
}

/// A free TCP port on 127.0.0.1 (bound and released; good enough for a test's servers).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("binding 127.0.0.1:0")
}

/// One running (or stopped) `nats-server` with JetStream.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    /// Client port.
    pub port: u16,
    /// Monitoring port (`/healthz`).
    pub http_port: u16,
    conf: PathBuf,
    log: PathBuf,
}

impl NatsServer {
    /// One server with JetStream, its store and log under `dir`.
    pub fn start(dir: &Path) -> Result<NatsServer, String> {
        let (port, http_port) = (free_port(), free_port());
        let conf = write_conf(dir, "n1", port, http_port, None)?;
        let mut s = NatsServer { child: None, port, http_port, conf, log: dir.join("n1.log") };
        s.restart()?;
        Ok(s)
    }

    /// Three servers in one cluster (JetStream on each); returns once every one is healthy
    /// (JetStream's meta leader elected).
    pub fn cluster(dir: &Path) -> Result<Vec<NatsServer>, String> {
        let ports: Vec<(u16, u16, u16)> = (0..3).map(|_| (free_port(), free_port(), free_port())).collect();
        let routes: Vec<String> = ports.iter().map(|p| format!("nats-route://127.0.0.1:{}", p.2)).collect();
        let mut servers = Vec::new();
        for (i, &(port, http_port, cport)) in ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let conf = write_conf(dir, &name, port, http_port, Some((cport, &routes)))?;
            let mut s = NatsServer { child: None, port, http_port, conf, log: dir.join(format!("{name}.log")) };
            s.spawn()?;
            servers.push(s);
        }
        for s in &servers {
            s.wait_healthy(Duration::from_secs(30))?;
        }
        Ok(servers)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to clients or peers).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the server with SIGTERM (a clean shutdown: it writes what it holds) and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let _ = c.wait();
        }
    }

    /// The server's JetStream store directory.
    pub fn store_dir(&self) -> PathBuf {
        let name = self.conf.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        self.conf.with_file_name(format!("{name}-store"))
    }

    /// Starts the server again with the same configuration and store; returns once healthy.
    pub fn restart(&mut self) -> Result<(), String> {
        self.spawn()?;
        self.wait_healthy(Duration::from_secs(30))
    }

    fn spawn(&mut self) -> Result<(), String> {
        self.kill();
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).map_err(|e| e.to_string())?;
        let child = Command::new(binary()?)
            .arg("-c")
            .arg(&self.conf)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting nats-server: {e}"))?;
        self.child = Some(child);
        Ok(())
    }

    /// Waits until `/healthz` answers 200 (the server is up and its JetStream is current).
    pub fn wait_healthy(&self, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(mut c) = TcpStream::connect(("127.0.0.1", self.http_port)) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = c.write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n");
                let mut reply = String::new();
                let _ = c.read_to_string(&mut reply);
                if reply.starts_with("HTTP/1.0 200") || reply.starts_with("HTTP/1.1 200") {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(20).collect();
                return Err(format!("nats-server on port {} not healthy after {timeout:?}; log tail: {tail:?}", self.port));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_conf(dir: &Path, name: &str, port: u16, http_port: u16, cluster: Option<(u16, &[String])>) -> Result<PathBuf, String> {
    let store = dir.join(format!("{name}-store"));
    std::fs::create_dir_all(&store).map_err(|e| e.to_string())?;
    let mut conf = format!(
        "server_name: {name}\nlisten: 127.0.0.1:{port}\nhttp: 127.0.0.1:{http_port}\njetstream {{ store_dir: \"{}\" }}\n",
        store.display()
    );
    if let Some((cport, routes)) = cluster {
        let routes: Vec<String> = routes.iter().map(|r| format!("\"{r}\"")).collect();
        conf += &format!("cluster {{ name: tw, listen: 127.0.0.1:{cport}, routes: [{}] }}\n", routes.join(", "));
    }
    let path = dir.join(format!("{name}.conf"));
    std::fs::write(&path, conf).map_err(|e| e.to_string())?;
    Ok(path)
}
