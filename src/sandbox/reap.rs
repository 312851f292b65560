//! Killing whatever a run left behind: its process group, and every process
//! of its private uid (a grandchild that called `setsid` has left the group
//! but cannot leave its uid), then reaping what we adopted; and counting a
//! user's tasks, for a process limit relative to what the user already runs.

use std::time::Duration;

/// Kill the process group `pgid` (ignoring "no such process").
pub(super) fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: plain syscall; a negative pid addresses the process group.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// Make this process the reaper of its orphaned descendants, so that the
/// killed leftovers of a run are reaped here instead of lingering as zombies
/// under an init that may reap slowly (true if it took effect).
pub(super) fn become_subreaper() -> bool {
    // SAFETY: plain prctl on the calling process.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0 }
}

/// How many processes of `uid`, other than `main`, are alive.
pub(super) fn count_live(uid: u32, main: u32) -> usize {
    live_except(&processes_of(uid), main)
}

/// The live processes of `processes` other than `main`.
fn live_except(processes: &[(libc::pid_t, bool)], main: u32) -> usize {
    processes
        .iter()
        .filter(|(pid, zombie)| !zombie && *pid as u32 != main)
        .count()
}

/// Kill every process of `uid` except `main` (whose `Child` reaps it) until
/// none is alive, reaping those that became our children. A fork bomb keeps
/// forking while being killed, so this loops; its process limit bounds it.
pub(super) fn kill_uid(uid: u32, main: u32) {
    for _ in 0..500 {
        let mut alive = false;
        for (pid, zombie) in processes_of(uid) {
            if pid as u32 == main {
                continue;
            }
            if zombie {
                // Reaps it if it is our (adopted) child; ECHILD otherwise.
                let mut status = 0;
                // SAFETY: plain syscall; WNOHANG never blocks.
                unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
            } else {
                alive = true;
                // SAFETY: plain syscall on a pid read from /proc.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        if !alive {
            break;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// How many processes of the group `pgid`, other than `main`, are alive (the
/// leftovers of a run whose descendants cannot leave its group: the
/// Landlock + seccomp floor denies `setsid` and `setpgid`).
pub(super) fn count_group(pgid: u32, main: u32) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != main)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| group_of_live(&stat))
                == Some(pgid)
        })
        .count()
}

/// The process group of a live process from its `/proc/PID/stat` line
/// (`None` for a zombie). The command name may hold spaces and parentheses,
/// so fields are counted after its last `)`.
fn group_of_live(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?;
    if state.starts_with('Z') || state.starts_with('X') {
        return None;
    }
    fields.nth(1)?.parse().ok()
}

/// Tasks (threads included, as RLIMIT_NPROC counts them) of `uid`.
pub(super) fn count_tasks(uid: u32) -> u64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
        .filter(|status| owner_state(status, uid).is_some())
        .map(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(1)
        })
        .sum()
}

/// Processes whose real or effective uid is `uid`, with whether each is a
/// zombie.
fn processes_of(uid: u32) -> Vec<(libc::pid_t, bool)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter_map(|pid| {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            owner_state(&status, uid).map(|zombie| (pid, zombie))
        })
        .collect()
}

/// `Some(is_zombie)` when the process is owned by `uid`.
fn owner_state(status: &str, uid: u32) -> Option<bool> {
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
    };
    let zombie = field("State:").is_some_and(|s| s.starts_with('Z') || s.starts_with('X'));
    let owned = field("Uid:").is_some_and(|ids| {
        ids.split_whitespace()
            .take(2)
            .any(|id| id.parse::<u32>() == Ok(uid))
    });
    owned.then_some(zombie)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_owner_and_state_from_proc_status() {
        let status = "Name:\tpython3\nState:\tS (sleeping)\nUid:\t100007\t100007\t100007\t100007\n";
        assert_eq!(owner_state(status, 100_007), Some(false));
        assert_eq!(owner_state(status, 100_008), None);
        let zombie = status.replace("S (sleeping)", "Z (zombie)");
        assert_eq!(owner_state(&zombie, 100_007), Some(true));
    }

    #[test]
    fn reads_the_group_after_a_name_with_parentheses() {
        let stat = "4242 (py (x) 1) S 4200 4242 4242 0 -1 4194560";
        assert_eq!(group_of_live(stat), Some(4242));
        assert_eq!(group_of_live("7 (a) Z 1 9 9 0"), None);
        assert_eq!(group_of_live("garbage"), None);
    }

    #[test]
    fn counts_the_live_members_of_a_group() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .expect("sleep starts");
        let pgid = child.id();
        assert_eq!(count_group(pgid, 0), 1);
        assert_eq!(count_group(pgid, pgid), 0, "main is not a leftover");
        kill_group(pgid);
        let _ = child.wait();
        assert_eq!(count_group(pgid, 0), 0);
        // SAFETY: getuid cannot fail.
        assert!(count_tasks(unsafe { libc::getuid() }) >= 2);
    }

    #[test]
    fn finds_this_process_by_its_uid() {
        // SAFETY: getuid cannot fail.
        let me = unsafe { libc::getuid() };
        let pid = std::process::id() as libc::pid_t;
        // One listing: other processes of this uid come and go meanwhile.
        let listed = processes_of(me);
        assert!(listed.contains(&(pid, false)));
        assert_eq!(
            live_except(&listed, pid as u32),
            live_except(&listed, 0) - 1
        );
        assert_eq!(live_except(&[(7, true), (8, false), (9, false)], 9), 1);
    }
}
