//! The shape of a run: which accounts the events go to, how many webhooks each account has, and on which
//! receivers those webhooks are. One account with `--webhooks` webhooks by default (the fan-out of round 1);
//! with `--accounts A --webhooks-per-account W`, A accounts of W webhooks each, every event published to one
//! account drawn uniformly (or by Zipf's law with `--skew`), so it fans out to that account's webhooks only.
//!
//! `--slow-accounts K` adds K accounts after those (the tail of a Zipf draw), each with
//! `--slow-webhooks-per-account` webhooks on a receiver of its own that answers late or never: the noisy
//! neighbours. Their deliveries are counted apart; the run's figures are the other accounts'.

use rand::Rng;

use super::BenchArgs;

/// The webhooks each event to a well-behaved account goes to: `--webhooks` of the one account, or
/// `--webhooks-per-account`.
pub fn per_account(args: &BenchArgs) -> usize {
    match args.accounts {
        1 => args.webhooks,
        _ => args.webhooks_per_account,
    }
}

/// Whether every event goes to one account (round 1's shape), which may then have the daemon to itself.
pub fn one_account(args: &BenchArgs) -> bool {
    args.accounts == 1 && args.slow_accounts == 0
}

/// The webhooks of each slow account: `--slow-webhooks-per-account`, or as many as the others'.
pub fn slow_per_account(args: &BenchArgs) -> usize {
    args.slow_webhooks_per_account
        .unwrap_or(args.webhooks_per_account)
}

/// The deliveries the events of a run make.
pub struct Deliveries {
    /// To the well-behaved accounts: awaited, and measured.
    pub expected: usize,
    /// To the slow accounts: neither.
    pub slow: usize,
}

pub struct Shape {
    /// Webhooks of each well-behaved account.
    pub per_account: usize,
    /// Well-behaved accounts, numbered first.
    pub accounts: usize,
    /// Slow accounts, numbered after them.
    pub slow_accounts: usize,
    /// Webhooks of each slow account.
    pub slow_per_account: usize,
    /// The cumulative share of events of each account (Zipf with `--skew`), for drawing one.
    cumulative: Vec<f64>,
}

impl Shape {
    pub fn of(args: &BenchArgs) -> anyhow::Result<Shape> {
        if args.accounts == 0 || args.webhooks_per_account == 0 {
            anyhow::bail!("--accounts and --webhooks-per-account must be at least 1");
        }
        if !(0.0..=10.0).contains(&args.skew) {
            anyhow::bail!("--skew must be between 0 (uniform) and 10");
        }
        let slow_per_account = slow_per_account(args);
        if args.slow_accounts > 0 && slow_per_account == 0 {
            anyhow::bail!("--slow-webhooks-per-account must be at least 1");
        }
        let all = args.accounts + args.slow_accounts;
        let weights = (1..=all).map(|rank| 1.0 / (rank as f64).powf(args.skew));
        let total: f64 = weights.clone().sum();
        let cumulative = weights
            .scan(0.0, |sum, weight| {
                *sum += weight / total;
                Some(*sum)
            })
            .collect();
        Ok(Shape {
            per_account: per_account(args),
            accounts: args.accounts,
            slow_accounts: args.slow_accounts,
            slow_per_account,
            cumulative,
        })
    }

    /// Accounts, slow ones included.
    pub fn all_accounts(&self) -> usize {
        self.accounts + self.slow_accounts
    }

    /// Webhooks of the well-behaved accounts, numbered first.
    fn well_behaved_webhooks(&self) -> usize {
        self.accounts * self.per_account
    }

    /// Webhooks, slow ones included.
    pub fn webhooks(&self) -> usize {
        self.well_behaved_webhooks() + self.slow_accounts * self.slow_per_account
    }

    /// The account (its index) webhook `index` belongs to.
    pub fn account_of(&self, webhook: usize) -> usize {
        match webhook.checked_sub(self.well_behaved_webhooks()) {
            None => webhook / self.per_account,
            Some(slow) => self.accounts + slow / self.slow_per_account,
        }
    }

    /// The slow account (0 for the first) account `index` is, if it is one.
    pub fn slow(&self, account: usize) -> Option<usize> {
        account.checked_sub(self.accounts)
    }

    /// The accounts of `events` events, drawn up front (the deliveries to wait for are those of the
    /// well-behaved accounts), and the deliveries they make.
    pub fn draw_events(&self, events: usize) -> (Vec<usize>, Deliveries) {
        let mut rng = rand::rng();
        let draws: Vec<usize> = (0..events).map(|_| self.draw(&mut rng)).collect();
        let to_slow = draws.iter().filter(|a| self.slow(**a).is_some()).count();
        let deliveries = Deliveries {
            expected: self.per_account * (events - to_slow),
            slow: self.slow_per_account * to_slow,
        };
        (draws, deliveries)
    }

    /// The account (its index) the next event goes to.
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        let at: f64 = rng.random();
        self.cumulative
            .partition_point(|share| *share < at)
            .min(self.all_accounts() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        bench: BenchArgs,
    }

    fn shape(args: &[&str]) -> Shape {
        let args = Args::parse_from(std::iter::once("bench").chain(args.iter().copied()));
        Shape::of(&args.bench).unwrap()
    }

    #[test]
    fn one_account_by_default_and_a_skew_favours_the_first() {
        let one = shape(&["--webhooks", "10"]);
        assert_eq!((one.accounts, one.per_account, one.webhooks()), (1, 10, 10));
        let many = shape(&["--accounts", "100", "--webhooks-per-account", "2"]);
        assert_eq!(many.webhooks(), 200);
        assert_eq!(many.account_of(199), 99);
        let mut rng = rand::rng();
        let mut uniform = vec![0; 100];
        for _ in 0..100_000 {
            uniform[many.draw(&mut rng)] += 1;
        }
        assert!(
            uniform.iter().all(|n| (700..1300).contains(n)),
            "{uniform:?}"
        );
        let skewed = shape(&["--accounts", "100", "--skew", "1.2"]);
        let mut drawn = vec![0; 100];
        for _ in 0..100_000 {
            drawn[skewed.draw(&mut rng)] += 1;
        }
        assert!(drawn[0] > 10 * drawn[99], "{drawn:?}");
    }

    #[test]
    fn slow_accounts_come_after_the_others_with_their_own_webhooks() {
        let slow = shape(&[
            "--accounts",
            "3",
            "--webhooks-per-account",
            "2",
            "--slow-accounts",
            "2",
            "--slow-webhooks-per-account",
            "5",
        ]);
        assert_eq!((slow.all_accounts(), slow.webhooks()), (5, 16));
        let accounts: Vec<_> = (0..16).map(|w| slow.account_of(w)).collect();
        assert_eq!(accounts, [0, 0, 1, 1, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4]);
        assert_eq!(
            (slow.slow(2), slow.slow(3), slow.slow(4)),
            (None, Some(0), Some(1))
        );
        let one = shape(&["--webhooks", "10", "--slow-accounts", "1"]);
        assert_eq!(
            (one.all_accounts(), one.webhooks(), one.account_of(11)),
            (2, 12, 1)
        );
    }
}
