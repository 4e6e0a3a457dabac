"""Session reports: published states (a recording folder, a JSON-lines file, or a broker) -> one
self-contained HTML page with the plots embedded.

``source`` reads states and events, ``tags`` reads event marks, ``summary`` computes the numbers
(pure, no plotting), ``plots`` draws them with matplotlib (the ``[report]`` extra), ``page``
assembles the HTML and ``cli`` is the ``emotion-edge report`` command. The daemon imports none
of these.
"""
