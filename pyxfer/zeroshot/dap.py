"""Direct attribute prediction (DAP; Lampert, Nickisch & Harmeling, CVPR 2009 / TPAMI 2014).

One probabilistic classifier per attribute is trained on image features (the attribute value of
an image is its class's value), then classes are scored by how well their attribute row agrees
with the predicted attributes:

- binary attributes (all table values in [0, 1]): logistic regression gives p_m(x) = p(a_m=1|x)
  and class c scores ``sum_m a_cm log(p_m / pi_m) + (1 - a_cm) log((1 - p_m) / (1 - pi_m))``,
  the log of Lampert's ``prod_m p(a_m = a_cm | x) / p(a_m = a_cm)`` where pi_m is the prior of
  attribute m over the training classes. A fractional a_cm (a graded table: 0.5 for an
  attribute a class is drawn with only sometimes) is read as p(a_m = 1 | c): the logistic
  regression is trained with that soft label (the image counts as present with weight a_cm and
  absent with weight 1 - a_cm) and the class score is the expected log-ratio;
- continuous attributes: ridge regression predicts a_m(x) and class c scores the Gaussian
  log-likelihood ``-(a_m(x) - a_cm)^2 / (2 sigma_m^2)`` with sigma_m^2 the residual variance of
  attribute m on the training images.

Features are standardised before the per-attribute models. The logistic regressions of all
binary attributes are fitted together by one L-BFGS run (:func:`fit_logistic`, scikit-learn's
objective), which is much faster than one solver per attribute on high-dimensional features.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from pyxfer.zeroshot._base import ZeroShotClassifier, rows_for

AttributeKind = Literal["auto", "binary", "continuous"]


def fit_logistic(
    Z: np.ndarray, T: np.ndarray, C: float, *, max_iter: int = 1000, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """L2-regularised logistic regressions, one per column of ``T``, with soft targets.

    Minimises, for every column m at once (the problems are independent; one L-BFGS run solves
    them together), scikit-learn's objective

        0.5 ||w_m||^2 + C sum_i [log(1 + exp(z_im)) - t_im z_im],   z_im = z_i . w_m + b_m,

    whose loss term is the cross-entropy with target t_im in [0, 1] (a fractional t counts the
    image as positive with weight t and negative with weight 1 - t); the intercept b_m is not
    penalised. With 0/1 targets this is ``LogisticRegression(C=C)``.

    Args:
        Z: (N, D) features.
        T: (N, M) targets in [0, 1].
        C: inverse regularisation strength (> 0).

    Returns:
        ``(W, b)``: W (D, M), b (M,); p(t_im = 1) = sigmoid(Z @ W + b).
    """
    from scipy.optimize import minimize
    from scipy.special import expit

    n, d = Z.shape
    m = T.shape[1]
    scale = 1.0 / (C * n)  # objective divided by C n: same minimiser, better conditioned

    def objective(theta: np.ndarray) -> tuple[float, np.ndarray]:
        W = theta[: d * m].reshape(d, m)
        b = theta[d * m :]
        z = Z @ W + b  # (N, M)
        loss = 0.5 * scale * float((W * W).sum()) + float((np.logaddexp(0.0, z) - T * z).sum()) / n
        g = (expit(z) - T) / n  # (N, M)
        grad = np.concatenate([(scale * W + Z.T @ g).ravel(), g.sum(axis=0)])
        return loss, grad

    res = minimize(
        objective,
        np.zeros(d * m + m),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "gtol": tol, "ftol": 1e-12},
    )
    return res.x[: d * m].reshape(d, m), res.x[d * m :]


class DAP(ZeroShotClassifier):
    """Direct attribute prediction.

    Args:
        attribute_type: ``"binary"`` (logistic regression; values in [0, 1], fractional ones
            as soft labels), ``"continuous"`` (ridge), or ``"auto"``: per attribute, binary when
            every value in the fit table lies in [0, 1].
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
        from sklearn.linear_model import Ridge

        is01 = np.all((S >= 0) & (S <= 1), axis=0)  # (A,)
        if self.attribute_type == "binary":
            if not is01.all():
                bad = np.nonzero(~is01)[0].tolist()
                raise ValueError(
                    "class_descriptions: attribute_type='binary' needs values in "
                    f"[0, 1], attribute column(s) {bad} have others"
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
        self.prior_ = np.clip(train_rows.mean(axis=0), self.prob_clip, 1 - self.prob_clip)
        self.sigma2_ = np.ones(S.shape[1])
        self.coef_ = np.zeros((Z.shape[1], S.shape[1]))  # (D, A)
        self.intercept_ = np.zeros(S.shape[1])  # (A,)
        # a binary attribute constant (0 or 1) over the training classes is predicted as is
        const = binary & (train_rows.min(axis=0) == train_rows.max(axis=0))
        const &= np.isin(train_rows[0], (0.0, 1.0))
        self.constant_ = np.where(const, train_rows[0], np.nan)  # (A,)
        fitted = binary & ~const
        if fitted.any():
            W, b = fit_logistic(Z, A[:, fitted], self.C)
            self.coef_[:, fitted] = W
            self.intercept_[fitted] = b
        for m in np.flatnonzero(~binary):
            reg = Ridge(alpha=self.alpha).fit(Z, A[:, m])
            resid = A[:, m] - reg.predict(Z)
            self.sigma2_[m] = max(float(np.var(resid)), 1e-6)
            self.coef_[:, m] = reg.coef_
            self.intercept_[m] = reg.intercept_

    def predict_attributes(self, X: Any) -> np.ndarray:
        """Per-attribute predictions (N, A): p(a_m = 1 | x) for binary, a_m(x) for continuous."""
        from scipy.special import expit

        if not hasattr(self, "coef_"):
            raise RuntimeError("DAP is not fitted; call fit first")
        Z = (self._check_X(X) - self.mean_) / self.scale_
        out = Z @ self.coef_ + self.intercept_  # (N, A)
        out[:, self.binary_] = expit(out[:, self.binary_])
        const = ~np.isnan(self.constant_)
        out[:, const] = self.constant_[const]
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
