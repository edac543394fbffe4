//! Private PostgreSQL and Redis servers for the tests that stop and restart a
//! dependency: the shared stack stays up for every other test.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use crate::helpers::{free_port, log_dir, random_suffix};

fn pg_bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let mut best: Option<(u32, PathBuf)> = None;
    for entry in std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed") {
        let path = entry.expect("dir entry").path();
        let version = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse::<u32>().ok());
        if let Some(v) = version
            && path.join("bin/initdb").exists()
            && best.as_ref().is_none_or(|(b, _)| v > *b)
        {
            best = Some((v, path.join("bin")));
        }
    }
    best.expect("a PostgreSQL server under /usr/lib/postgresql")
        .1
}

/// Runs a command as the `postgres` OS user when we are root (initdb and the
/// server refuse to run as root), directly otherwise.
fn as_postgres(program: &Path) -> Command {
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0\n"))
        .unwrap_or(false);
    if is_root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_postgres(path: &Path) {
    let _ = Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status();
}

/// A throwaway PostgreSQL cluster on a free loopback port, with the `drop`
/// role (password `drop`) and database `drop`, as in the shared stack.
pub struct PrivatePostgres {
    pub port: u16,
    dir: PathBuf,
    bindir: PathBuf,
}

impl PrivatePostgres {
    pub async fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("order-api-pg-{}", random_suffix()));
        std::fs::create_dir_all(&dir).expect("pg dir");
        chown_postgres(&dir);
        let bindir = pg_bindir();
        let pwfile = dir.join("pw");
        std::fs::write(&pwfile, "drop\n").expect("pwfile");
        chown_postgres(&pwfile);
        let status = as_postgres(&bindir.join("initdb"))
            .arg("-D")
            .arg(dir.join("data"))
            .args([
                "-U",
                "drop",
                "--auth=scram-sha-256",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run initdb");
        assert!(status.success(), "initdb failed");
        let pg = Self {
            port: free_port(),
            dir,
            bindir,
        };
        pg.start_server().await;
        let admin = crate::helpers::connect(&pg.url("postgres")).await;
        admin
            .batch_execute("CREATE DATABASE drop")
            .await
            .expect("create database drop");
        pg
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://drop:drop@127.0.0.1:{}/{db}", self.port)
    }

    pub async fn start_server(&self) {
        let log = log_dir().join(format!(
            "private-pg-{}.log",
            self.dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("pg")
        ));
        let _ = std::fs::File::create(&log);
        chown_postgres(&log);
        let status = as_postgres(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .arg("-l")
            .arg(&log)
            .arg("-o")
            .arg(format!(
                "-p {} -c listen_addresses=127.0.0.1 -k {} -c fsync=off -c max_connections=100",
                self.port,
                self.dir.display()
            ))
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl start");
        assert!(
            status.success(),
            "private PostgreSQL did not start; see {}",
            log.display()
        );
    }

    /// Immediate shutdown: connections drop as they would on a crash.
    pub fn stop_server(&self) {
        let status = as_postgres(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "-t", "60", "stop"])
            .stdout(Stdio::null())
            .status()
            .expect("pg_ctl stop");
        assert!(status.success(), "private PostgreSQL did not stop");
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres(&self.bindir.join("pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A throwaway redis-server on a free loopback port, without persistence.
pub struct PrivateRedis {
    pub port: u16,
    child: Option<std::process::Child>,
}

impl PrivateRedis {
    pub async fn start() -> Self {
        let mut r = Self {
            port: free_port(),
            child: None,
        };
        r.start_server().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub async fn start_server(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let addr = format!("127.0.0.1:{}", self.port);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&addr).await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("private redis-server did not start on {addr}");
    }

    pub fn stop_server(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop_server();
    }
}
