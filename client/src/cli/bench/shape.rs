//! The shape of a run: which accounts the events go to, how many webhooks each account has, and on which
//! receivers those webhooks are. One account with `--webhooks` webhooks by default (the fan-out of round 1);
//! with `--accounts A --webhooks-per-account W`, A accounts of W webhooks each, every event published to one
//! account drawn uniformly (or by Zipf's law with `--skew`), so it fans out to that account's webhooks only.

use rand::Rng;

use super::BenchArgs;

/// The webhooks each event goes to: `--webhooks` of the one account, or `--webhooks-per-account`.
pub fn per_account(args: &BenchArgs) -> usize {
    match args.accounts {
        1 => args.webhooks,
        _ => args.webhooks_per_account,
    }
}

pub struct Shape {
    /// Webhooks of each account.
    pub per_account: usize,
    pub accounts: usize,
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
        let per_account = per_account(args);
        let weights = (1..=args.accounts).map(|rank| 1.0 / (rank as f64).powf(args.skew));
        let total: f64 = weights.clone().sum();
        let cumulative = weights
            .scan(0.0, |sum, weight| {
                *sum += weight / total;
                Some(*sum)
            })
            .collect();
        Ok(Shape {
            per_account,
            accounts: args.accounts,
            cumulative,
        })
    }

    pub fn webhooks(&self) -> usize {
        self.accounts * self.per_account
    }

    /// The account (its index) webhook `index` belongs to.
    pub fn account_of(&self, webhook: usize) -> usize {
        webhook / self.per_account
    }

    /// The account (its index) the next event goes to.
    pub fn draw(&self, rng: &mut impl Rng) -> usize {
        let at: f64 = rng.random();
        self.cumulative
            .partition_point(|share| *share < at)
            .min(self.accounts - 1)
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
}
