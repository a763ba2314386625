//! Test harness: a temp folder per test holding the sim VMs, session records, logs and workflow
//! files; an allocator wrapper that counts allocations, releases and VMs alive at once; an
//! observer that collects output lines.

use async_trait::async_trait;
use azlin_core::ProviderKind;
use azlin_providers::sim::{SimProvider, SimSettings};
use azlin_remote::OutputStream;
use azlin_workflow::{
    AllocError, Allocation, AllocationRequest, Allocator, Observer, Origin, ProviderAllocator,
    RunOptions, RunReport,
};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Counts what the sim allocator does.
pub struct Counting {
    inner: ProviderAllocator,
    pub allocations: AtomicUsize,
    pub releases: AtomicUsize,
    live: AtomicUsize,
    pub peak: AtomicUsize,
    pub vms: Mutex<Vec<String>>,
}

impl Counting {
    pub fn allocations(&self) -> usize {
        self.allocations.load(Ordering::SeqCst)
    }
    pub fn releases(&self) -> usize {
        self.releases.load(Ordering::SeqCst)
    }
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl Allocator for Counting {
    async fn allocate(&self, request: &AllocationRequest) -> Result<Allocation, AllocError> {
        let a = self.inner.allocate(request).await?;
        self.allocations.fetch_add(1, Ordering::SeqCst);
        let live = self.live.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(live, Ordering::SeqCst);
        self.vms.lock().unwrap().push(a.vm.name.to_string());
        Ok(a)
    }

    async fn release(&self, allocation: &Allocation) -> Result<(), AllocError> {
        let r = self.inner.release(allocation).await;
        self.live.fetch_sub(1, Ordering::SeqCst);
        self.releases.fetch_add(1, Ordering::SeqCst);
        r
    }
}

/// One output line as the observer saw it.
#[derive(Debug, Clone)]
pub struct Line {
    pub workflow: String,
    pub job: String,
    pub step: String,
    pub text: String,
}

/// Collects output lines.
#[derive(Default)]
pub struct Collect {
    pub lines: Mutex<Vec<Line>>,
    pub started_steps: AtomicUsize,
}

impl Collect {
    pub fn lines(&self) -> Vec<Line> {
        self.lines.lock().unwrap().clone()
    }
    /// The text of every line, in order.
    pub fn texts(&self) -> Vec<String> {
        self.lines().into_iter().map(|l| l.text).collect()
    }
    /// The text of lines starting with `prefix`, with the prefix cut off.
    pub fn tagged(&self, prefix: &str) -> Vec<(String, String)> {
        self.lines()
            .into_iter()
            .filter_map(|l| {
                l.text
                    .strip_prefix(prefix)
                    .map(|rest| (l.workflow.clone(), rest.to_string()))
            })
            .collect()
    }
}

impl Observer for Collect {
    fn step_started(&self, _at: Origin<'_>) {
        self.started_steps.fetch_add(1, Ordering::SeqCst);
    }
    fn output(&self, at: Origin<'_>, _stream: OutputStream, line: &str) {
        self.lines.lock().unwrap().push(Line {
            workflow: at.workflow.to_string(),
            job: at.job.to_string(),
            step: at.step.to_string(),
            text: line.to_string(),
        });
    }
}

/// A temp folder with everything a run needs.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["vms", "sessions", "logs", "workflows", "outside"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        Env { dir }
    }

    pub fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// The sim allocator, wrapped for counting.
    pub fn allocator(&self, boot: Duration) -> Arc<Counting> {
        let sim = SimProvider::new(
            self.path("vms"),
            SimSettings {
                boot,
                fail_rate: 0.0,
            },
        );
        Arc::new(Counting {
            inner: ProviderAllocator::local(Arc::new(sim), ProviderKind::Sim),
            allocations: AtomicUsize::new(0),
            releases: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            vms: Mutex::new(Vec::new()),
        })
    }

    pub fn options(&self) -> RunOptions {
        let mut o = RunOptions::new(self.path("sessions"), self.path("logs"));
        o.actor = Some("tester".into());
        o.repository = Some("azlin/test".into());
        o.env
            .insert("TMPDIR".into(), self.path("outside").display().to_string());
        o
    }

    pub fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let p = self.path("workflows").join(name);
        std::fs::write(&p, yaml).unwrap();
        p
    }

    /// VM folders still on disk.
    pub fn vm_folders(&self) -> Vec<String> {
        std::fs::read_dir(self.path("vms"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    // Hidden entries are the record store's own (its request index), not VMs.
                    .filter(|name| !name.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Session records on disk.
    pub fn records(&self) -> Vec<azlin_workflow::SessionRecord> {
        azlin_workflow::session::SessionStore::new(self.path("sessions"))
            .list()
            .unwrap()
    }
}

/// Runs `files` and returns the report with the observer.
pub async fn run(
    files: &[PathBuf],
    options: &RunOptions,
    allocator: Arc<Counting>,
) -> (RunReport, Arc<Collect>) {
    let observer = Arc::new(Collect::default());
    let report = azlin_workflow::run_workflows(files, options, allocator, observer.clone())
        .await
        .unwrap_or_else(|e| panic!("run failed to start: {e}"));
    (report, observer)
}

/// A workflow with one job of `steps` steps, each printing `VM=<vm name> HOME=<home>`.
pub fn vm_echo_workflow(steps: usize, extra: &str) -> String {
    let mut y = String::from("on: push\njobs:\n  build:\n    runs-on: ubuntu-latest\n    steps:\n");
    for i in 0..steps {
        y.push_str(&format!(
            "      - name: step {i}\n        run: |\n          {extra}\n          echo \"VM=$AZLIN_VM_NAME HOME=$HOME\"\n"
        ));
    }
    y
}

/// Asserts nothing is left: every allocation released, no VM folder.
pub fn assert_all_released(env: &Env, counting: &Counting) {
    assert_eq!(
        counting.allocations(),
        counting.releases(),
        "every VM released"
    );
    assert!(
        env.vm_folders().is_empty(),
        "VM folders left: {:?}",
        env.vm_folders()
    );
}
