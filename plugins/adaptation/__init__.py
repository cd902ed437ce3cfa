"""Built-in domain-adaptation objectives: labelled source + unlabelled target.

Each takes ``forward(source_views, source_labels, target_views)`` (the batch protocol of
:mod:`pyxfer.objectives.adaptation`), owns a linear classifier (``num_classes``), and
returns ``loss``, ``loss_cls`` (source cross-entropy) and its own parts.

============  ===========================  ====================================  ==============
name          paper                        adaptation term (defaults)            target views
============  ===========================  ====================================  ==============
source_only   (baseline)                   none; the target is never seen        (ignored)
entropy_min   Grandvalet & Bengio 2005     0.1 x mean target entropy             weak
pseudo_label  Lee 2013                     alpha(t) x CE on confident argmax     weak
                                           (tau 0.95, alpha_f 3, ramp 0.1-0.6)
fixmatch      Sohn et al. 2020             1 x CE(strong, argmax weak) where     weak, strong
                                           max p >= 0.95
dann          Ganin et al. 2016            BCE of a 1024-1024 domain MLP behind  weak
                                           gradient reversal, 2/(1+e^-10p)-1
cdan          Long et al. 2018             DANN on f (x) softmax (randomised     weak
                                           if D*K > 4096), weights 1+e^-H
coral         Sun & Saenko 2016            ||C_s - C_t||_F^2 / 4d^2 on logits    weak
mmd           Long et al. 2015 (DAN)       multi-kernel Gaussian MMD^2 on        weak
                                           features + logits (5 kernels)
mcc           Jin et al. 2020              class confusion, T 2.5, entropy       weak
                                           reweighting
============  ===========================  ====================================  ==============
"""

from __future__ import annotations

from pyxfer import hookimpl
from pyxfer.hookspecs import Register
from pyxfer.registry import register_classes

#: registry name -> (module, class)
BUILTIN: dict[str, tuple[str, str]] = {
    "source_only": ("source_only", "SourceOnly"),
    "entropy_min": ("entropy_min", "EntropyMinimization"),
    "pseudo_label": ("pseudo_label", "PseudoLabel"),
    "fixmatch": ("fixmatch", "FixMatch"),
    "dann": ("dann", "DANN"),
    "cdan": ("cdan", "CDAN"),
    "coral": ("coral", "DeepCORAL"),
    "mmd": ("mmd", "DAN"),
    "mcc": ("mcc", "MCC"),
}


@hookimpl
def pyxfer_register_objectives(register: Register) -> None:
    register_classes(
        register,
        __name__,
        BUILTIN,
        ("consumes", "augmentation", "num_views", "target_augmentation"),
    )
