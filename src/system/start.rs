//! Which `systemctl` commands start the service after the set-up: decided from what
//! is known (does systemd run, is the unit where it looks, is the service enabled and
//! running, did the unit change), so the order is pinned by tests without a systemd.

use super::UNIT_NAME;

/// What the set-up knows when it comes to start the service.
#[derive(Clone, Copy, Debug, Default)]
pub struct Known {
    /// `--no-start`.
    pub no_start: bool,
    /// systemd is the running init ([`super::SYSTEMD_RUNNING`] exists).
    pub systemd: bool,
    /// The unit went where systemd reads the administrator's units.
    pub unit_in_systemds_dir: bool,
    pub enabled: bool,
    pub active: bool,
    /// The unit file was written by this run.
    pub unit_changed: bool,
}

/// Why the set-up does not start the service itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NotStarted {
    NoStart,
    NoSystemd,
    UnitElsewhere,
}

/// The set-up's last step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Start {
    /// Say how to start it, and why it was not.
    Say(NotStarted),
    /// Enabled and running with this unit already.
    Running,
    /// Run these `systemctl` argument lists, in order.
    Systemctl(Vec<Vec<&'static str>>),
}

/// Whether `is-enabled` and `is-active` are worth asking: only where the set-up
/// would start the service.
pub fn asks_systemd(known: &Known) -> bool {
    !known.no_start && known.systemd && known.unit_in_systemds_dir
}

pub fn plan_start(known: &Known) -> Start {
    if known.no_start {
        return Start::Say(NotStarted::NoStart);
    }
    if !known.systemd {
        return Start::Say(NotStarted::NoSystemd);
    }
    if !known.unit_in_systemds_dir {
        return Start::Say(NotStarted::UnitElsewhere);
    }
    if known.enabled && known.active && !known.unit_changed {
        return Start::Running;
    }
    // systemd reads a unit file written since it last looked only when told to
    // (an earlier run may have written it with --no-start).
    let mut commands = vec![vec!["daemon-reload"]];
    if known.unit_changed && known.active {
        // A service that runs under the old unit takes the new one.
        commands.push(vec!["try-restart", UNIT_NAME]);
    }
    commands.push(vec!["enable", "--now", UNIT_NAME]);
    Start::Systemctl(commands)
}

/// The removal's `systemctl` commands: before the unit file goes (`before`), and
/// after (`after`). Nothing where systemd does not run the unit.
pub fn plan_stop(systemd: bool, unit_in_systemds_dir: bool, unit_there: bool) -> StopPlan {
    if !(systemd && unit_in_systemds_dir && unit_there) {
        return StopPlan::default();
    }
    StopPlan {
        before: vec![vec!["disable", "--now", UNIT_NAME]],
        after: vec![vec!["daemon-reload"]],
    }
}

/// See [`plan_stop`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StopPlan {
    pub before: Vec<Vec<&'static str>>,
    pub after: Vec<Vec<&'static str>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn systemd() -> Known {
        Known {
            systemd: true,
            unit_in_systemds_dir: true,
            ..Known::default()
        }
    }

    #[test]
    fn not_started_where_it_cannot_or_should_not_be() {
        let no_start = Known {
            no_start: true,
            ..systemd()
        };
        assert_eq!(plan_start(&no_start), Start::Say(NotStarted::NoStart));
        assert!(!asks_systemd(&no_start));
        let none = Known::default();
        assert_eq!(plan_start(&none), Start::Say(NotStarted::NoSystemd));
        assert!(!asks_systemd(&none));
        let elsewhere = Known {
            unit_in_systemds_dir: false,
            ..systemd()
        };
        assert_eq!(
            plan_start(&elsewhere),
            Start::Say(NotStarted::UnitElsewhere)
        );
        assert!(asks_systemd(&systemd()));
    }

    #[test]
    fn a_first_start() {
        let first = Known {
            unit_changed: true,
            ..systemd()
        };
        assert_eq!(
            plan_start(&first),
            Start::Systemctl(vec![
                vec!["daemon-reload"],
                vec!["enable", "--now", "outbox.service"]
            ])
        );
    }

    #[test]
    fn a_running_service_takes_a_changed_unit() {
        let changed = Known {
            enabled: true,
            active: true,
            unit_changed: true,
            ..systemd()
        };
        assert_eq!(
            plan_start(&changed),
            Start::Systemctl(vec![
                vec!["daemon-reload"],
                vec!["try-restart", "outbox.service"],
                vec!["enable", "--now", "outbox.service"]
            ])
        );
    }

    #[test]
    fn a_running_service_with_the_same_unit_is_left_alone() {
        let same = Known {
            enabled: true,
            active: true,
            ..systemd()
        };
        assert_eq!(plan_start(&same), Start::Running);
        // Stopped, or disabled, with the same unit: enabled and started again.
        for known in [
            Known {
                enabled: true,
                ..systemd()
            },
            Known {
                active: true,
                ..systemd()
            },
        ] {
            assert_eq!(
                plan_start(&known),
                Start::Systemctl(vec![
                    vec!["daemon-reload"],
                    vec!["enable", "--now", "outbox.service"]
                ])
            );
        }
    }

    #[test]
    fn the_removal_stops_disables_and_reloads() {
        assert_eq!(
            plan_stop(true, true, true),
            StopPlan {
                before: vec![vec!["disable", "--now", "outbox.service"]],
                after: vec![vec!["daemon-reload"]],
            }
        );
        for (systemd, dir, there) in [
            (false, true, true),
            (true, false, true),
            (true, true, false),
        ] {
            assert_eq!(plan_stop(systemd, dir, there), StopPlan::default());
        }
    }
}
