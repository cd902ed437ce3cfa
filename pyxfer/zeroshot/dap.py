"""Direct attribute prediction (DAP; Lampert, Nickisch & Harmeling, CVPR 2009 / TPAMI 2014).

One probabilistic classifier per attribute is trained on image features (the attribute value of
an image is its class's value), then classes are scored by how well their attribute row agrees
with the predicted attributes:

- binary attributes (all table values in {0, 1}): logistic regression gives p_m(x) = p(a_m=1|x)
  and class c scores ``sum_m a_cm log(p_m / pi_m) + (1 - a_cm) log((1 - p_m) / (1 - pi_m))``,
  the log of Lampert's ``prod_m p(a_m = a_cm | x) / p(a_m = a_cm)`` where pi_m is the prior of
  attribute m over the training classes (a fractional a_cm at predict time gives the expected
  log-ratio);
- continuous attributes: ridge regression predicts a_m(x) and class c scores the Gaussian
  log-likelihood ``-(a_m(x) - a_cm)^2 / (2 sigma_m^2)`` with sigma_m^2 the residual variance of
  attribute m on the training images.

Features are standardised before the per-attribute models.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from pyxfer.zeroshot._base import ZeroShotClassifier, rows_for

AttributeKind = Literal["auto", "binary", "continuous"]


class DAP(ZeroShotClassifier):
    """Direct attribute prediction.

    Args:
        attribute_type: ``"binary"`` (logistic regression), ``"continuous"`` (ridge), or
            ``"auto"``: per attribute, binary when every value in the fit table is 0 or 1.
        C: inverse regularisation of the logistic regressions (scikit-learn's ``C``).
        alpha: regularisation of the ridge regressions.
        prob_clip: probabilities are clipped to [prob_clip, 1 - prob_clip] before the logs.
        seed: seed of the solvers (logistic regression is deterministic with lbfgs).

    Examples:
        >>> import numpy as np
        >>> S = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0]], dtype=float)
        >>> rng = np.random.default_rng(0)
        >>> y = np.repeat(np.arange(3), 30)
        >>> X = S[y] + 0.1 * rng.normal(size=(90, 3))
        >>> model = DAP().fit(X, y, S)  # class 3 has no images
        >>> int(model.predict(np.array([[1.0, 1.0, 0.0]]), S[[2, 3]], class_ids=[2, 3])[0])
        3
    """

    def __init__(
        self,
        attribute_type: AttributeKind = "auto",
        *,
        C: float = 1.0,
        alpha: float = 1.0,
        prob_clip: float = 1e-3,
        seed: int = 0,
    ) -> None:
        if attribute_type not in ("auto", "binary", "continuous"):
            raise ValueError(
                "attribute_type: expected 'auto', 'binary' or 'continuous', "
                f"received {attribute_type!r}"
            )
        if not 0 < prob_clip < 0.5:
            raise ValueError(f"prob_clip: expected a value in (0, 0.5), received {prob_clip}")
        self.attribute_type = attribute_type
        self.C = C
        self.alpha = alpha
        self.prob_clip = prob_clip
        self.seed = seed

    def _fit(self, X: np.ndarray, y: np.ndarray, S: np.ndarray, ids: np.ndarray) -> None:
        from sklearn.linear_model import LogisticRegression, Ridge

        is01 = np.all((S == 0) | (S == 1), axis=0)  # (A,)
        if self.attribute_type == "binary":
            if not is01.all():
                bad = np.nonzero(~is01)[0].tolist()
                raise ValueError(
                    "class_descriptions: attribute_type='binary' needs values in "
                    f"{{0, 1}}, attribute column(s) {bad} have others"
                )
            binary = is01
        elif self.attribute_type == "continuous":
            binary = np.zeros_like(is01)
        else:
            binary = is01
        self.mean_ = X.mean(axis=0)
        self.scale_ = X.std(axis=0) + 1e-8
        Z = (X - self.mean_) / self.scale_
        A = S[rows_for(ids, y)]  # (N, A) attribute targets of each image
        train_rows = S[rows_for(ids, np.unique(y))]
        self.binary_ = binary
        self.models_: list[Any] = []
        self.prior_ = np.clip(train_rows.mean(axis=0), self.prob_clip, 1 - self.prob_clip)
        self.sigma2_ = np.ones(S.shape[1])
        for m in range(S.shape[1]):
            target = A[:, m]
            if binary[m]:
                if np.unique(target).size < 2:  # constant over the training classes
                    self.models_.append(float(target[0]))
                    continue
                clf = LogisticRegression(C=self.C, max_iter=1000, random_state=self.seed)
                clf.fit(Z, target.astype(np.int64))
                self.models_.append(clf)
            else:
                reg = Ridge(alpha=self.alpha).fit(Z, target)
                resid = target - reg.predict(Z)
                self.sigma2_[m] = max(float(np.var(resid)), 1e-6)
                self.models_.append(reg)

    def predict_attributes(self, X: Any) -> np.ndarray:
        """Per-attribute predictions (N, A): p(a_m = 1 | x) for binary, a_m(x) for continuous."""
        if not hasattr(self, "models_"):
            raise RuntimeError("DAP is not fitted; call fit first")
        Z = (self._check_X(X) - self.mean_) / self.scale_
        out = np.empty((Z.shape[0], len(self.models_)))
        for m, model in enumerate(self.models_):
            if isinstance(model, float):
                out[:, m] = model
            elif self.binary_[m]:
                out[:, m] = model.predict_proba(Z)[:, 1]
            else:
                out[:, m] = model.predict(Z)
        return out

    def _scores(self, X: np.ndarray, S: np.ndarray) -> np.ndarray:
        P = self.predict_attributes(X)  # (N, A)
        b = self.binary_
        scores = np.zeros((P.shape[0], S.shape[0]))
        if b.any():
            eps = self.prob_clip
            p = np.clip(P[:, b], eps, 1 - eps)
            pi = self.prior_[b]
            pos = np.log(p / pi)  # (N, Ab)
            neg = np.log((1 - p) / (1 - pi))
            scores += pos @ S[:, b].T + neg @ (1 - S[:, b]).T  # (N, C)
        if (~b).any():
            pred, rows, s2 = P[:, ~b], S[:, ~b], self.sigma2_[~b]
            d2 = (pred[:, None, :] - rows[None, :, :]) ** 2 / (2 * s2)  # (N, C, Ac)
            scores -= d2.sum(axis=2)
        return scores
