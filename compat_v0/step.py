"""`compat_v0.step`: step directory names (`standard_name_format`), as v0's `ocp.step`."""

from orbax_v1.training import NameFormat as NameFormat
from orbax_v1.training import standard_name_format as standard_name_format

__all__ = ["NameFormat", "standard_name_format"]
