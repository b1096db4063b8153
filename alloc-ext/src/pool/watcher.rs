//! The watcher thread: starts workers, notices their deaths at once, and
//! pumps for asynchronous jobs nobody waits on.
//!
//! It sleeps in one `poll` over: a control pipe (the handle's requests),
//! and either the zygote's socket (fork: the zygote reports each death
//! with its exit status) or one pidfd per spawned worker (readable when
//! it ends). A death is handled within one wake-up: the dead worker's
//! chunks are failed or requeued ([`State::on_death`](super::state::State::on_death)),
//! waiters are woken through the doorbell, a replacement is started.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration;

use super::state::{ctl, Shared, SlotState};
use super::worker::{spawn_args, WorkerSpec, ENTRY};
use super::zygote::{Common, Report, Zygote};
use crate::process::{Process, StartMethod};
use crate::sys;

/// How the watcher pumps while a background job runs and nobody waits.
const UNATTENDED_TICK: Duration = Duration::from_millis(1);

/// How workers are made.
pub(crate) enum Starter {
    Fork(Zygote),
    Spawn {
        method: StartMethod,
        procs: Vec<Option<Process>>,
    },
}

impl std::fmt::Debug for Starter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Starter::Fork(z) => f.debug_tuple("Fork").field(z).finish(),
            Starter::Spawn { method, .. } => {
                f.debug_struct("Spawn").field("method", method).finish()
            }
        }
    }
}

pub(crate) struct Watcher {
    pub(crate) shared: Arc<Shared>,
    pub(crate) starter: Starter,
    pub(crate) common: Common,
    pub(crate) ctl: OwnedFd,
}

impl Watcher {
    pub(crate) fn run(mut self) {
        let n = self.shared.mem.geometry().workers;
        for w in 0..n {
            self.start(w);
        }
        self.shared.ring_doorbell();
        let mut terminate = false;
        loop {
            let (unattended, closing) = {
                let st = self.shared.lock();
                (st.unattended(), st.closed && st.all_gone())
            };
            if closing {
                break;
            }
            let mut fds = vec![self.ctl.as_raw_fd()];
            match &self.starter {
                Starter::Fork(z) => fds.push(z.socket().as_raw_fd()),
                Starter::Spawn { procs, .. } => {
                    fds.extend(
                        procs
                            .iter()
                            .flatten()
                            .filter_map(|p| p.pidfd())
                            .map(|fd| fd.as_raw_fd()),
                    );
                }
            }
            let timeout = unattended.then_some(UNATTENDED_TICK);
            let ready = match sys::poll_many(&fds, timeout) {
                Ok(r) => r,
                Err(_) => vec![false; fds.len()],
            };
            if ready[0] {
                let mut buf = [0u8; 64];
                if let Ok(Some(k)) = sys::read_some(self.ctl.as_fd(), &mut buf) {
                    if k == 0 || buf[..k].contains(&ctl::TERMINATE) {
                        terminate = true;
                    }
                }
            }
            if terminate {
                break;
            }
            self.collect_deaths();
            self.kill_poisoned();
            let mut st = self.shared.lock();
            st.pump(&self.shared.mem);
            drop(st);
            self.shared.ring_doorbell();
        }
        self.shut_down(terminate);
    }

    /// Starts worker `w` (after its rings were made ready).
    fn start(&mut self, w: usize) {
        {
            let mut st = self.shared.lock();
            if st.terminated || st.closed {
                return;
            }
            if let Err(e) = st.prepare_start(&self.shared.mem, w) {
                st.start_failed(&self.shared.mem, w, e.to_string());
                return;
            }
        }
        let spec = WorkerSpec {
            index: w as u32,
            initializer: self.common.initializer,
            max_tasks: self.common.max_tasks,
        };
        match &mut self.starter {
            Starter::Fork(z) => {
                if let Err(e) = z.request_start(w as u32) {
                    let mut st = self.shared.lock();
                    st.start_failed(&self.shared.mem, w, format!("the zygote is gone: {e}"));
                }
                // The answer comes as a report.
            }
            Starter::Spawn { method, procs } => {
                let name = self.shared.mem.name().unwrap_or("").to_owned();
                let r = Process::entry(ENTRY, spawn_args(spec, &name))
                    .start_method(*method)
                    .daemon(true)
                    .name(format!("PoolWorker-{w}"))
                    .start();
                let mut st = self.shared.lock();
                match r {
                    Ok(p) => {
                        st.started(w, p.pid());
                        procs[w] = Some(p);
                    }
                    Err(e) => st.start_failed(&self.shared.mem, w, e.to_string()),
                }
            }
        }
    }

    /// Reads every death (and start report) waiting; handles each.
    fn collect_deaths(&mut self) {
        let mut deaths: Vec<(usize, Option<i32>)> = Vec::new();
        match &mut self.starter {
            Starter::Fork(z) => loop {
                match z.try_report() {
                    Ok(None) => break,
                    Ok(Some(Report::Started { index, pid })) => {
                        self.shared.lock().started(index as usize, pid);
                    }
                    Ok(Some(Report::StartFailed { index, errno })) => {
                        let mut st = self.shared.lock();
                        let why = format!("fork: {}", std::io::Error::from_raw_os_error(errno));
                        st.start_failed(&self.shared.mem, index as usize, why);
                    }
                    Ok(Some(Report::Died {
                        index, exitcode, ..
                    })) => {
                        deaths.push((index as usize, (exitcode != i32::MIN).then_some(exitcode)))
                    }
                    Err(()) => {
                        // The zygote died: its workers die with it.
                        let mut st = self.shared.lock();
                        for (w, s) in st.slots.iter().enumerate() {
                            if s.state != SlotState::Empty {
                                deaths.push((w, None));
                            }
                        }
                        if st.broken.is_none() {
                            st.broken = Some("the process that forks workers died".into());
                        }
                        break;
                    }
                }
            },
            Starter::Spawn { procs, .. } => {
                for (w, p) in procs.iter_mut().enumerate() {
                    let ended = p.as_ref().and_then(|p| p.pidfd()).is_some_and(|fd| {
                        sys::poll_readable(fd, Some(Duration::ZERO)).unwrap_or(false)
                    });
                    if ended {
                        let p = p.take().expect("checked");
                        let code = p
                            .join_timeout(Duration::from_secs(1))
                            .ok()
                            .map(|s| s.exitcode());
                        deaths.push((w, code));
                    }
                }
            }
        }
        if deaths.is_empty() {
            return;
        }
        let restart: Vec<usize> = {
            let mut st = self.shared.lock();
            for &(w, code) in &deaths {
                st.on_death(&self.shared.mem, w, code);
            }
            st.pump(&self.shared.mem);
            if st.closed || st.terminated || st.broken.is_some() {
                Vec::new()
            } else {
                deaths.iter().map(|&(w, _)| w).collect()
            }
        };
        self.shared.ring_doorbell();
        for w in restart {
            self.start(w);
        }
    }

    /// Kills workers whose rings sent garbage; their deaths follow.
    fn kill_poisoned(&mut self) {
        let bad = self.shared.lock().poisoned();
        for w in bad {
            match &self.starter {
                Starter::Fork(z) => {
                    let _ = z.request_kill(w as u32);
                }
                Starter::Spawn { procs, .. } => {
                    if let Some(p) = &procs[w] {
                        let _ = p.kill();
                    }
                }
            }
        }
    }

    fn shut_down(self, terminate: bool) {
        let Watcher {
            shared, starter, ..
        } = self;
        match starter {
            Starter::Fork(z) => z.shut_down(),
            Starter::Spawn { procs, .. } => {
                for p in procs.iter().flatten() {
                    if terminate {
                        let _ = p.kill();
                    }
                }
                for p in procs.iter().flatten() {
                    let _ = p.join();
                }
            }
        }
        let mut st = shared.lock();
        st.terminated |= terminate;
        let n = st.slots.len();
        for w in 0..n {
            if st.slots[w].state != SlotState::Empty {
                st.slots[w].state = SlotState::Running;
                st.on_death(&shared.mem, w, None);
            }
        }
        drop(st);
        shared.mem.unlink();
        shared.ring_doorbell();
    }
}
