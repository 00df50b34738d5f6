//! A headless Chromium driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
//! JSON messages separated by NUL bytes on file descriptors 3 and 4), with no driver crate:
//! navigate, evaluate JavaScript, wait until the page shows something, take a screenshot.
//!
//! Chromium runs in a process group of its own with a throwaway profile, and is stopped with
//! the [`Browser`] (also when a test fails). Script exceptions and `console.error` calls of
//! the page are collected ([`Browser::script_errors`]) so a test can insist there were none.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use licd::process::{SpawnOptions, Supervised};
use serde_json::{Value, json};

/// How long one protocol command may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// The viewport: wide enough for the dashboard's tables.
pub const WIDTH: u32 = 1280;
pub const HEIGHT: u32 = 900;

/// The Chromium to drive: `LICD_CHROMIUM`, else `/usr/bin/chromium` (Debian's package).
pub fn find_chromium() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("LICD_CHROMIUM") {
        return Some(PathBuf::from(path));
    }
    ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

/// The Chromium to drive, or `None` after printing why the test is skipped. With
/// `LICD_REQUIRE_BROWSER` set (CI sets it) a missing Chromium fails the test instead.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    match find_chromium() {
        Some(path) => Some(path),
        None if std::env::var_os("LICD_REQUIRE_BROWSER").is_some() => panic!(
            "{test}: LICD_REQUIRE_BROWSER is set but no Chromium was found \
             (install Debian's chromium, or set LICD_CHROMIUM)"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: no Chromium found (apt-get install chromium, or set \
                 LICD_CHROMIUM); set LICD_REQUIRE_BROWSER=1 to make this a failure"
            );
            None
        }
    }
}

/// A pipe whose two ends close on exec.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2: {}", std::io::Error::last_os_error());
    // SAFETY: both descriptors were just opened and are owned by nobody else.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// One headless Chromium with one page attached.
pub struct Browser {
    child: Supervised,
    to_browser: File,
    from_browser: Receiver<Value>,
    next_id: u64,
    session: String,
    errors: Vec<String>,
    log: Vec<String>,
    stderr: PathBuf,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts `chromium` headless and opens one blank page.
    pub fn launch(chromium: &Path) -> Result<Browser, String> {
        let profile = tempfile::TempDir::new().map_err(|e| e.to_string())?;
        let stderr = profile.path().join("stderr.txt");
        let (child_reads, we_write) = pipe();
        let (we_read, child_writes) = pipe();
        let mut command = Command::new(chromium);
        command
            .args([
                "--headless",
                "--disable-gpu",
                "--no-sandbox",
                "--disable-dev-shm-usage",
                "--remote-debugging-pipe",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-extensions",
                "--disable-sync",
                "--hide-scrollbars",
                "--mute-audio",
                // Loopback only: never a proxy, whatever the environment says.
                "--no-proxy-server",
                &format!("--window-size={WIDTH},{HEIGHT}"),
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).map_err(|e| e.to_string())?);
        let (r, w) = (child_reads.as_raw_fd(), child_writes.as_raw_fd());
        {
            use std::os::unix::process::CommandExt as _;
            // SAFETY: between fork and exec the closure calls only fcntl, dup2 and close,
            // which are async-signal-safe. The pipe ends are first copied above 10 (so that
            // neither sits on 3 or 4 already), then onto 3 and 4 without close-on-exec.
            unsafe {
                command.pre_exec(move || {
                    let r2 = libc::fcntl(r, libc::F_DUPFD, 10);
                    let w2 = libc::fcntl(w, libc::F_DUPFD, 10);
                    if r2 < 0 || w2 < 0 || libc::dup2(r2, 3) < 0 || libc::dup2(w2, 4) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    libc::close(r2);
                    libc::close(w2);
                    Ok(())
                });
            }
        }
        let options = SpawnOptions {
            own_group: true,
            drop_grace: Duration::from_secs(2),
            ..SpawnOptions::default()
        };
        let child = Supervised::spawn(&mut command, options)
            .map_err(|e| format!("cannot start {}: {e}", chromium.display()))?;
        drop(child_reads);
        drop(child_writes);
        let (tx, rx) = channel();
        let mut reader = File::from(we_read);
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut chunk = [0u8; 65536];
            loop {
                let n = match reader.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => n,
                };
                pending.extend_from_slice(&chunk[..n]);
                while let Some(end) = pending.iter().position(|b| *b == 0) {
                    let message: Vec<u8> = pending.drain(..=end).collect();
                    if let Ok(value) = serde_json::from_slice(&message[..end])
                        && tx.send(value).is_err()
                    {
                        return;
                    }
                }
            }
        });
        let mut browser = Browser {
            child,
            to_browser: File::from(we_write),
            from_browser: rx,
            next_id: 0,
            session: String::new(),
            errors: Vec::new(),
            log: Vec::new(),
            stderr,
            _profile: profile,
        };
        let target = browser.call(None, "Target.createTarget", json!({"url": "about:blank"}))?;
        let target_id = target["targetId"].clone();
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        )?;
        browser.session = attached["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_string();
        for domain in ["Page.enable", "Runtime.enable", "Log.enable"] {
            browser.page(domain, json!({}))?;
        }
        Ok(browser)
    }

    /// Sends one protocol command (to the page's session, or to the browser) and waits for its
    /// answer, collecting the page's errors that arrive meanwhile.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: Value,
    ) -> Result<Value, String> {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            message["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&message).map_err(|e| e.to_string())?;
        bytes.push(0);
        self.to_browser
            .write_all(&bytes)
            .map_err(|e| format!("{method}: the browser is gone ({e}){}", self.stderr_tail()))?;
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.from_browser.recv_timeout(left) {
                Ok(answer) if answer["id"] == json!(id) => {
                    if let Some(error) = answer.get("error") {
                        return Err(format!("{method}: {error}"));
                    }
                    return Ok(answer["result"].clone());
                }
                Ok(event) => self.note(&event),
                Err(RecvTimeoutError::Timeout) => {
                    return Err(format!("{method}: no answer within {CALL_TIMEOUT:?}"));
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(format!(
                        "{method}: the browser is gone{}",
                        self.stderr_tail()
                    ));
                }
            }
        }
    }

    fn page(&mut self, method: &str, params: Value) -> Result<Value, String> {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    /// Keeps what an event says about the page's errors.
    fn note(&mut self, event: &Value) {
        let params = &event["params"];
        match event["method"].as_str() {
            Some("Runtime.exceptionThrown") => {
                let details = &params["exceptionDetails"];
                let text = details["exception"]["description"]
                    .as_str()
                    .or(details["text"].as_str())
                    .unwrap_or("an exception");
                self.errors.push(text.to_string());
            }
            Some("Runtime.consoleAPICalled") if params["type"] == "error" => {
                self.errors
                    .push(format!("console.error: {}", params["args"]));
            }
            Some("Log.entryAdded") => {
                let entry = &params["entry"];
                self.log.push(format!(
                    "{} {}: {}",
                    entry["level"].as_str().unwrap_or(""),
                    entry["source"].as_str().unwrap_or(""),
                    entry["text"].as_str().unwrap_or("")
                ));
            }
            _ => {}
        }
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(10)..].join("\n");
        format!("; its stderr ends:\n{tail}")
    }

    /// Opens `url` and waits until its document has loaded.
    pub fn goto(&mut self, url: &str) -> Result<(), String> {
        let answer = self.page("Page.navigate", json!({"url": url}))?;
        if let Some(error) = answer.get("errorText").and_then(Value::as_str) {
            return Err(format!("{url}: {error}"));
        }
        self.wait_for(
            "the document loaded",
            "document.readyState === 'complete'",
            Duration::from_secs(15),
        )
        .map(|_| ())
    }

    /// The value of a JavaScript expression (awaited when it is a promise), as JSON.
    pub fn eval(&mut self, expression: &str) -> Result<Value, String> {
        let answer = self.page(
            "Runtime.evaluate",
            json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
        )?;
        if let Some(details) = answer.get("exceptionDetails") {
            return Err(format!("{expression}: {details}"));
        }
        Ok(answer["result"]["value"].clone())
    }

    /// Evaluates `expression` every 100 ms until it is truthy, within `within`; returns its
    /// value. On a timeout the error tells `what` was awaited and what the page showed.
    pub fn wait_for(
        &mut self,
        what: &str,
        expression: &str,
        within: Duration,
    ) -> Result<Value, String> {
        let deadline = Instant::now() + within;
        loop {
            let value = self.eval(expression)?;
            let truthy = match &value {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return Ok(value);
            }
            if Instant::now() >= deadline {
                let text = self
                    .eval("document.body ? document.body.innerText : ''")
                    .unwrap_or_default();
                return Err(format!(
                    "{what}: not seen within {within:?}; the page shows:\n{}",
                    text.as_str().unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Saves a PNG of the whole page (its full height) at `path`, creating its folder.
    pub fn screenshot(&mut self, path: &Path) -> Result<(), String> {
        let height = self
            .eval("Math.ceil(document.documentElement.scrollHeight)")?
            .as_u64()
            .unwrap_or(u64::from(HEIGHT))
            .clamp(u64::from(HEIGHT), 4000);
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        )?;
        let shot = self.page("Page.captureScreenshot", json!({"format": "png"}));
        self.page("Emulation.clearDeviceMetricsOverride", json!({}))?;
        let data = shot?["data"]
            .as_str()
            .ok_or("no screenshot data")?
            .to_string();
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        std::fs::write(path, png).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The page's uncaught exceptions and `console.error` calls so far.
    pub fn script_errors(&mut self) -> Vec<String> {
        while let Ok(event) = self.from_browser.try_recv() {
            self.note(&event);
        }
        self.errors.clone()
    }

    /// The browser's log entries so far (failed loads, policy violations, ...).
    pub fn log(&mut self) -> Vec<String> {
        while let Ok(event) = self.from_browser.try_recv() {
            self.note(&event);
        }
        self.log.clone()
    }

    /// Closes the browser, killing it if it does not exit within a few seconds.
    pub fn close(mut self) {
        let _ = self.call(None, "Browser.close", json!({}));
        if !matches!(self.child.wait_timeout(Duration::from_secs(5)), Ok(Some(_))) {
            let _ = self.child.kill();
        }
    }
}
