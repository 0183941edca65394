"""`compat_v0.checkpoint_managers`: v0's `save_decision_policy` and `preservation_policy`.

    from compat_v0.checkpoint_managers import save_decision_policy as save_decision_policy_lib
"""

from compat_v0 import _preservation_policy as preservation_policy
from compat_v0 import _save_decision_policy as save_decision_policy

__all__ = ["preservation_policy", "save_decision_policy"]
