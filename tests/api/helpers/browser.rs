//! A real browser for the dashboard's tests: headless Chromium from the OS packages, driven
//! through chromedriver (WebDriver) by fantoccini. Each test gets its own chromedriver and
//! browser, in a process group of their own that is killed when the test ends, passing or not.
//! `.ci/run` installs the packages (`apt-get install chromium chromium-driver`); `CHROME_BIN`
//! and `CHROMEDRIVER` name other binaries.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use super::wait::within;

/// chromedriver and the browsers it started: the whole process group dies with this.
struct DriverGroup(std::process::Child);

impl Drop for DriverGroup {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.0.wait();
    }
}

pub struct Browser {
    pub client: Client,
    _driver: DriverGroup,
}

/// A headless Chromium, with JavaScript on or off.
pub async fn browser(javascript: bool) -> Browser {
    let chromedriver = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let driver = Command::new(&chromedriver)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|error| {
            panic!(
                "cannot start {chromedriver} ({error}): apt-get install chromium chromium-driver"
            )
        });
    let driver = DriverGroup(driver);
    let url = format!("http://127.0.0.1:{port}");
    within(
        Duration::from_secs(20),
        "chromedriver to listen",
        || async { std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() },
    )
    .await;
    let binary = std::env::var("CHROME_BIN").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let mut options = json!({
        "binary": binary,
        "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,900", "--no-first-run"],
    });
    if !javascript {
        options["prefs"] = json!({"profile.managed_default_content_settings.javascript": 2});
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert("goog:chromeOptions".into(), options);
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    let client = ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a browser session");
    Browser {
        client,
        _driver: driver,
    }
}

impl Browser {
    pub async fn open(&self, url: &str) {
        self.client.goto(url).await.expect("navigate");
    }

    /// The visible text of the first element `css` selects ("" when there is none).
    pub async fn text(&self, css: &str) -> String {
        match self.client.find(Locator::Css(css)).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        }
    }

    /// Whether `css` selects anything.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .unwrap_or_default()
            .is_empty()
    }

    /// Clicks `css`, again if a live refresh replaced it between finding and clicking.
    pub async fn click(&self, css: &str) {
        within(Duration::from_secs(10), css, || async {
            match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await.is_ok(),
                Err(_) => false,
            }
        })
        .await;
    }

    /// Waits until the text of `css` contains `expected` (the page changing by itself).
    pub async fn wait_for_text(&self, css: &str, expected: &str) {
        within(Duration::from_secs(20), expected, || async {
            self.text(css).await.contains(expected)
        })
        .await;
    }

    /// Saves a screenshot of the page as `target/ui-screenshots/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let directory = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
        std::fs::create_dir_all(&directory).expect("screenshot directory");
        std::fs::write(directory.join(format!("{name}.png")), png).expect("save screenshot");
    }

    /// Runs `script` in the page and returns what it returns.
    pub async fn eval(&self, script: &str) -> serde_json::Value {
        self.client
            .execute(script, Vec::new())
            .await
            .expect("script")
    }

    pub async fn close(self) {
        let _ = self.client.close().await;
    }
}
