//! Killing whatever a run left behind: its process group, and every process
//! of its private uid (a grandchild that called `setsid` has left the group
//! but cannot leave its uid), then reaping what we adopted.

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
    processes_of(uid)
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
    fn finds_this_process_by_its_uid() {
        // SAFETY: getuid cannot fail.
        let me = unsafe { libc::getuid() };
        let pid = std::process::id() as libc::pid_t;
        assert!(processes_of(me).contains(&(pid, false)));
        assert_eq!(count_live(me, pid as u32), count_live(me, 0) - 1);
    }
}
