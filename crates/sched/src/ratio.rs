//! The estimate of how much of its remaining `max_new_tokens` a running request will still use
//! (SGLang's `new_token_ratio`): admission reserves `ratio * remaining` slots per running request.
//! It starts high, decays every decode step toward a floor (most requests stop early), is set
//! from the observed progress after a retraction, and resets when the scheduler goes idle.

use crate::config::SchedulerConfig;

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NewTokenRatio {
    pub value: f64,
    pub init: f64,
    pub min: f64,
    pub decay: f64,
}

impl NewTokenRatio {
    pub fn new(cfg: &SchedulerConfig) -> Self {
        let init = (cfg.init_new_token_ratio * cfg.schedule_conservativeness).min(1.0);
        let min = (init * cfg.min_new_token_ratio_factor).min(1.0);
        let decay = (init - min) / f64::from(cfg.new_token_ratio_decay_steps);
        NewTokenRatio {
            value: init,
            init,
            min,
            decay,
        }
    }

    pub fn on_decode_step(&mut self) {
        self.value = (self.value - self.decay).max(self.min);
    }

    /// After a retraction: `(generated + steps_ahead * n) / total max_new_tokens` of the
    /// requests left running, capped at 1.
    pub fn on_retract(&mut self, generated: usize, max_new: usize, running: usize, steps: usize) {
        let est = (generated + steps * running) as f64 / (max_new + 1) as f64;
        self.value = est.clamp(self.min, 1.0);
    }

    pub fn on_idle(&mut self) {
        self.value = self.init;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decays_to_floor_and_resets() {
        let cfg = SchedulerConfig::new(64);
        let mut r = NewTokenRatio::new(&cfg);
        assert!((r.value - 0.7).abs() < 1e-12);
        assert!((r.min - 0.098).abs() < 1e-12);
        for _ in 0..599 {
            r.on_decode_step();
        }
        assert!(r.value > r.min);
        r.on_decode_step();
        r.on_decode_step();
        assert!((r.value - r.min).abs() < 1e-9);
        r.on_retract(50, 100, 2, 20);
        assert!((r.value - 90.0 / 101.0).abs() < 1e-12);
        r.on_retract(500, 100, 2, 20);
        assert_eq!(r.value, 1.0);
        r.on_idle();
        assert_eq!(r.value, r.init);
    }

    #[test]
    fn conservativeness_scales_and_clips() {
        let mut cfg = SchedulerConfig::new(64);
        cfg.schedule_conservativeness = 2.0;
        assert_eq!(NewTokenRatio::new(&cfg).init, 1.0);
        cfg.schedule_conservativeness = 0.5;
        assert!((NewTokenRatio::new(&cfg).init - 0.35).abs() < 1e-12);
    }
}
