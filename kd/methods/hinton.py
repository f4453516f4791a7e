"""`kd`: Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network".

(1 - alpha) * CE(student, y) + alpha * T^2 * KL(softmax(teacher/T) || softmax(student/T)).
With --standardize both logits are z-scored before they are softened (kd.methods.standard).
"""

import kd.methods.standard as standard
from kd.losses import cross_entropy, kd_grad, kd_terms_to, soft_kl_to, soft_targets, standardize
from kd.methods.base import METHODS


@METHODS.register("kd", "Hinton et al. 2015: match the teacher's softened probabilities at temperature T")
class HintonKD:
    uses_teacher = True
    knobs = ("temperature", "alpha", "standardize")  # the RunConfig fields it uses

    def __init__(self, cfg):
        self.temperature = cfg.temperature
        self.alpha = cfg.alpha
        self.standardize = cfg.standardize
        if self.standardize:  # the written-out gradient is the raw logits' one: autograd instead
            self.grad = None

    def formula(self) -> tuple[str, str]:
        """The loss with this run's numbers, as LaTeX, and a line saying what it means."""
        a, t = self.alpha, self.temperature
        return (
            rf"\mathcal{{L}} = {1 - a:.2f}\,\mathrm{{CE}}(s, y) + {a:.2f}\cdot{t:g}^2\,"
            rf"\mathrm{{KL}}\!\left(\mathrm{{softmax}}(t/{t:g})\,\|\,\mathrm{{softmax}}(s/{t:g})\right)",
            f"(1 − α)·CE + α·T²·KL with α = {a:.2f}, T = {t:g}; s, t: student and teacher logits. KL is "
            "averaged over the batch; T² keeps the soft term's gradient the same size for any T."
            + standard.caption(self.standardize),
        )

    def prepare(self, teacher_logits):
        return soft_targets(standard.of(teacher_logits, self.standardize), self.temperature)

    def __call__(self, student_logits, targets, teacher_log_probs):
        if not self.standardize:
            return kd_terms_to(student_logits, teacher_log_probs, targets, self.temperature, self.alpha)
        return {
            "ce": (1 - self.alpha) * cross_entropy(student_logits, targets),
            "soft": self.alpha * soft_kl_to(standardize(student_logits), teacher_log_probs, self.temperature),
        }

    def grad(self, student_logits, targets, teacher_log_probs):
        return kd_grad(student_logits, teacher_log_probs, targets, self.temperature, self.alpha)
