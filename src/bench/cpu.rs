//! The CPU time the benchmarks read of the processes on this machine (Linux's `/proc` and
//! `getrusage`): this process, another one by id, and one PostgreSQL server — the
//! postmaster of a backend of ours and every child of it, so another cluster on the
//! machine is not counted and a backend that ends during a span is said to be missing.
//! Elsewhere, or for a server on another machine or in a container, the readings are
//! `None`.

use std::collections::HashMap;
use std::time::Duration;

use sea_orm::DatabaseConnection;

use crate::domain;

/// The CPU time (user and system) this process has used; zero where it cannot be read.
pub(super) fn own_cpu() -> Duration {
    // SAFETY: getrusage only writes the struct it is given, which is all integers.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return Duration::ZERO;
        }
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).unwrap_or(0))
            + Duration::from_micros(u64::try_from(t.tv_usec).unwrap_or(0))
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// The CPU time of process `pid` and its threads.
pub(super) fn process_cpu(pid: u32) -> Option<Duration> {
    proc_stat(pid).map(|stat| stat.cpu)
}

/// The CPU a PostgreSQL server on this machine spent over a span.
#[derive(Debug, Clone, Copy, Default)]
pub struct ServerCpu {
    pub cpu: Duration,
    /// A process of the server ended during the span: its CPU is missing from `cpu`.
    pub lower_bound: bool,
}

impl ServerCpu {
    /// Its µs for each of `count` (items, requests), "≥ " first when it is a lower bound.
    pub(super) fn micros_each(&self, count: usize) -> String {
        let micros = self.cpu.as_secs_f64() * 1e6 / count.max(1) as f64;
        format!("{}{micros:.0}", if self.lower_bound { "≥ " } else { "" })
    }

    /// Both spans together.
    pub(super) fn add(&mut self, other: &ServerCpu) {
        self.cpu += other.cpu;
        self.lower_bound |= other.lower_bound;
    }
}

/// A PostgreSQL server running on this machine, known by its postmaster's id.
#[derive(Clone, Copy)]
pub(super) struct Server {
    postmaster: u32,
}

/// Each process of a [`Server`] and its CPU so far, by process id.
pub(super) struct ServerReading(HashMap<u32, Duration>);

impl Server {
    /// The server `db` is connected to, when it is a `postgres` process of this machine:
    /// the parent of a backend of ours. The backend's id is the server's view of it, so
    /// the process of that id here must also carry its title ([`serves`]: our role,
    /// database and client port): a server in a container or on another machine, whose
    /// ids mean nothing here, is not read.
    pub(super) async fn of(db: &DatabaseConnection) -> crate::Result<Option<Server>> {
        let Some(backend) = domain::bulk::backend(db).await? else {
            return Ok(None);
        };
        let title = std::fs::read(format!("/proc/{}/cmdline", backend.pid))
            .map(|title| String::from_utf8_lossy(&title).into_owned());
        if !title.is_ok_and(|title| serves(&title, &backend)) {
            return Ok(None);
        }
        Ok(proc_stat(backend.pid)
            .filter(|backend| backend.postgres)
            .map(|backend| Server {
                postmaster: backend.parent,
            }))
    }

    /// Its processes' CPU so far; `None` once the postmaster is gone.
    pub(super) fn read(self) -> Option<ServerReading> {
        let server = proc_stat(self.postmaster).filter(|stat| stat.postgres)?;
        let mut cpu = HashMap::from([(self.postmaster, server.cpu)]);
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|name| name.parse().ok())
            else {
                continue;
            };
            if let Some(stat) = proc_stat(pid).filter(|stat| stat.parent == self.postmaster) {
                cpu.insert(pid, stat.cpu);
            }
        }
        Some(ServerReading(cpu))
    }
}

/// Whether a process titled `title` is the PostgreSQL `backend`: `postgres: [cluster: ]role
/// database host(port) state`, `[local]` for the client over a Unix socket.
fn serves(title: &str, backend: &domain::bulk::Backend) -> bool {
    let client = match backend.client_port {
        Some(port) => format!("({port})"),
        None => "[local]".to_owned(),
    };
    let (role, database) = (&backend.role, &backend.database);
    title.starts_with("postgres: ")
        && title
            .match_indices(&format!(" {role} {database} "))
            .any(|(at, served)| {
                let rest = &title[at + served.len()..];
                rest.split(' ')
                    .next()
                    .is_some_and(|host| host.ends_with(&client))
            })
}

impl ServerReading {
    /// What the server spent from `earlier` to this reading: processes started meanwhile
    /// count whole, one that ended makes the figure a lower bound.
    pub(super) fn since(&self, earlier: &ServerReading) -> ServerCpu {
        ServerCpu {
            cpu: (self.0.iter())
                .map(|(pid, cpu)| {
                    cpu.saturating_sub(earlier.0.get(pid).copied().unwrap_or_default())
                })
                .sum(),
            // (A pid the system reused within the span would read low, unflagged: spans
            // are seconds, and pids wrap only after `pid_max`, 32,768 or more, processes.)
            lower_bound: earlier.0.keys().any(|pid| !self.0.contains_key(pid)),
        }
    }
}

/// What the benchmarks read of a process in `/proc/<pid>/stat`.
struct ProcStat {
    postgres: bool,
    parent: u32,
    cpu: Duration,
}

fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// A process's name, parent and CPU time (`utime` + `stime`, the 14th and 15th fields)
/// from the text of its `stat` file; the name may hold anything, parentheses included.
fn parse_stat(stat: &str) -> Option<ProcStat> {
    let close = stat.rfind(')')?;
    let name = stat.get(stat.find('(')? + 1..close)?;
    // After the name: the state, the parent's id, then nine more before `utime`.
    let mut fields = stat[close + 1..].split_whitespace().skip(1);
    let parent = fields.next()?.parse().ok()?;
    let mut fields = fields.skip(9);
    let ticks = fields.next()?.parse::<u64>().ok()? + fields.next()?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system.
    let per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|&hz| hz > 0)?;
    Some(ProcStat {
        postgres: name == "postgres",
        parent,
        cpu: Duration::from_micros(ticks * 1_000_000 / per_second),
    })
}

#[cfg(test)]
mod tests {
    /// A process's name, parent and CPU time come from its `stat` line, whatever its name
    /// holds.
    #[test]
    fn a_stat_line_gives_name_parent_and_cpu() {
        // SAFETY: sysconf reads a constant of the system.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        let line =
            "4242 (postgres) S 1 4242 4242 0 -1 4194560 1200 0 0 0 150 50 0 0 20 0 1 0 100 0";
        let stat = super::parse_stat(line).unwrap();
        assert!(stat.postgres);
        assert_eq!(stat.parent, 1);
        assert!(
            (stat.cpu.as_secs_f64() - 200.0 / hz).abs() < 1e-6,
            "{:?}",
            stat.cpu
        );
        let odd = "7 (a) b (c)) R 3 7 7 0 -1 0 0 0 0 0 3 4 0 0 20 0 1 0 100 0";
        let stat = super::parse_stat(odd).unwrap();
        assert!(!stat.postgres);
        assert_eq!(stat.parent, 3);
        assert!(
            (stat.cpu.as_secs_f64() - 7.0 / hz).abs() < 1e-6,
            "{:?}",
            stat.cpu
        );
        assert!(super::parse_stat("garbage").is_none());
        assert!(super::parse_stat("1 )x( S").is_none());
    }

    /// A reading of this process's own `stat` agrees with the process: our parent, and a
    /// CPU time that only grows.
    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_as_itself() {
        let me = super::proc_stat(std::process::id()).unwrap();
        assert_eq!(me.parent, std::os::unix::process::parent_id());
        let later = super::process_cpu(std::process::id()).unwrap();
        assert!(later >= me.cpu);
    }

    /// A backend is known by its title naming our role, database and client's port (or
    /// `[local]`).
    #[test]
    fn a_backend_is_known_by_its_title() {
        let backend =
            |port: Option<u16>, role: &str, database: &str| crate::domain::bulk::Backend {
                pid: 1,
                client_port: port,
                role: role.into(),
                database: database.into(),
            };
        let title = "postgres: postgres test 127.0.0.1(41276) idle\0";
        assert!(super::serves(
            title,
            &backend(Some(41276), "postgres", "test")
        ));
        assert!(!super::serves(
            title,
            &backend(Some(4127), "postgres", "test")
        ));
        assert!(!super::serves(
            title,
            &backend(Some(41276), "postgres", "other")
        ));
        assert!(!super::serves(title, &backend(None, "postgres", "test")));
        let local = "postgres: 15/main: app db [local] SELECT";
        assert!(super::serves(local, &backend(None, "app", "db")));
        assert!(!super::serves(local, &backend(None, "app", "db2")));
        let unrelated = "/usr/lib/postgresql/15/bin/postgres -D /var/lib/x";
        assert!(!super::serves(unrelated, &backend(None, "app", "db")));
        let checkpointer = "postgres: 15/main: checkpointer";
        assert!(!super::serves(
            checkpointer,
            &backend(Some(5432), "app", "db")
        ));
    }

    /// A process gone between two readings makes the server's figure a lower bound; one
    /// started meanwhile counts whole.
    #[test]
    fn a_server_span_counts_new_processes_and_flags_ended_ones() {
        use std::collections::HashMap;
        use std::time::Duration;
        let ms = Duration::from_millis;
        let earlier = super::ServerReading(HashMap::from([(1, ms(10)), (2, ms(5))]));
        let later = super::ServerReading(HashMap::from([(1, ms(12)), (3, ms(4))]));
        let span = later.since(&earlier);
        assert_eq!(span.cpu, ms(6));
        assert!(span.lower_bound);
        let same = super::ServerReading(HashMap::from([(1, ms(15)), (2, ms(5))]));
        let span = same.since(&earlier);
        assert_eq!(span.cpu, ms(5));
        assert!(!span.lower_bound);
    }
}
