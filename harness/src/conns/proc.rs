//! A child process of the `conns` workload (`<quicbench> conns --server-child`
//! or `--client-child`), started inside a namespace and spoken to by lines on
//! its stdin and stdout. Started from the namespace's keeper thread, it is
//! SIGKILLed (pdeathsig) if the coordinator dies; [`ChildProc::stop`] and drop
//! kill it by its PID if it does not exit in time.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use quicbench_netem::NetNs;

pub struct ChildProc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl ChildProc {
    /// Start `exe conns <flag> <json>` inside `ns`.
    pub fn start(exe: &Path, ns: &NetNs, flag: &str, json: &str) -> anyhow::Result<ChildProc> {
        let mut cmd = ns.command(exe);
        cmd.arg("conns")
            .arg(flag)
            .arg(json)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = ns
            .spawn(cmd)
            .with_context(|| format!("starting {} conns {flag}", exe.display()))?;
        let stdin = child.stdin.take();
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("child process has no stdout"))?;
        let (tx, lines) = mpsc::channel();
        std::thread::Builder::new()
            .name("conns-child-out".into())
            .spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            })?;
        Ok(ChildProc {
            child,
            stdin,
            lines,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The next line, waiting at most `limit`.
    pub fn recv(&self, limit: Duration) -> anyhow::Result<String> {
        self.lines.recv_timeout(limit).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => {
                anyhow!("no answer from child {} within {limit:?}", self.child.id())
            }
            mpsc::RecvTimeoutError::Disconnected => {
                anyhow!("child {} closed its output (exited?)", self.child.id())
            }
        })
    }

    /// A line if one is waiting.
    pub fn try_recv(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    /// Send one command line.
    pub fn send(&mut self, cmd: &str) -> anyhow::Result<()> {
        let stdin = self
            .stdin
            .as_mut()
            .ok_or_else(|| anyhow!("child already stopped"))?;
        stdin.write_all(cmd.as_bytes())?;
        stdin.write_all(b"\n")?;
        stdin.flush()?;
        Ok(())
    }

    /// Send `quit`, close stdin, wait at most `grace`, then kill by PID.
    pub fn stop(&mut self, grace: Duration) -> String {
        if let Some(mut s) = self.stdin.take() {
            let _ = s.write_all(b"quit\n");
        }
        let t0 = Instant::now();
        loop {
            match self.child.try_wait() {
                Ok(Some(st)) => return format!("child {} exited ({st})", self.child.id()),
                Ok(None) if t0.elapsed() < grace => std::thread::sleep(Duration::from_millis(20)),
                _ => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        format!(
            "child {} did not exit within {grace:?}: killed",
            self.child.id()
        )
    }
}

impl Drop for ChildProc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.stop(Duration::from_secs(3));
        }
    }
}
