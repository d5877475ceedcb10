r"""Real CTSM ensembles: parameter files, namelists, CIME cases and history files.

The teaching model runs an ensemble in seconds; CTSM needs a cluster. This
package does the two ends of a CTSM ensemble in Python and leaves the running
to CIME on the cluster, one module per step:

1. :mod:`emucal.ctsm.members` writes the members:
   :func:`~emucal.ctsm.members.prepare_ensemble` writes, for every parameter
   set, a folder with the files that make a single-basin CTSM case run with
   those values, and a shell script of CIME commands that clones the base
   case and submits it. Nothing is submitted from Python;
   :func:`~emucal.ctsm.members.plan_ensemble` checks the same and returns
   the same table, writing nothing. The member that
   runs the base case unedited is recorded at the base case's own values
   (:func:`~emucal.ctsm.members.base_values` lists them beside the space's
   defaults), and :func:`~emucal.ctsm.members.ensemble_params` turns the
   tables of many basins into training inputs.
2. :mod:`emucal.ctsm.history` reads the runs back:
   :func:`~emucal.ctsm.history.read_history` reads the daily history files
   the runs write and returns them in the layout of
   :func:`emucal.model.simulate`, a Dataset ``(member, basin, time)`` of flows
   in mm/day, so that the chapters' code (metrics, emulators) works on real
   CTSM output unchanged. :func:`~emucal.ctsm.history.incomplete_members`
   lists the runs that failed, stopped early or have gaps.

The public names of both modules are also names of this package, so that
``from emucal import ctsm`` gives ``ctsm.prepare_ensemble``,
``ctsm.read_history`` and the others.

References
----------
Tang, G., Wood, A. W. and Swenson, S. (2025), On using AI-based large-sample
emulators for land/hydrology model calibration and regionalization, Water
Resour. Res. 61, e2024WR039525; code: https://github.com/NCAR/CTSM_calibration.
Lawrence, D. M. et al. (2019), The Community Land Model version 5, J. Adv.
Model. Earth Syst. 11, 4245-4287 (history fields, parameter files).
"""

from .history import HISTORY_VARIABLES, incomplete_members, read_history
from .members import (NAMELIST_DEFAULTS, base_values, ensemble_params, example_case, fortran_number,
                      plan_ensemble, prepare_ensemble)

__all__ = [
    "HISTORY_VARIABLES",
    "NAMELIST_DEFAULTS",
    "base_values",
    "ensemble_params",
    "example_case",
    "fortran_number",
    "incomplete_members",
    "plan_ensemble",
    "prepare_ensemble",
    "read_history",
]
