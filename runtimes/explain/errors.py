"""The one error the explainer raises: a served graph whose contributions it cannot compute exactly.

::

    UnexplainableModel      the graph lacks what an exact explanation needs (training covers,
                            a scorecard's reference), uses a node or mode the explainer does not
                            implement, or reads columns that do not each come from one manifest
                            feature; the message names the node, attribute, tree or column

The runtime turns it into its own load error (a model that cannot explain what it scores is not
served with explanations); the builder into a build error.
"""

from __future__ import annotations


class UnexplainableModel(ValueError):
    """A served graph whose per-feature contributions cannot be computed exactly."""
