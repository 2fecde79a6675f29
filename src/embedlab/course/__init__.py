"""The course layer: what the notebooks need and nothing else uses. The library below never imports it.

=============  ==============================================================================================
params         the parameters cell's check: `p = params.check(globals(), "03")` -> typed settings, run paths
presets/       the shipped parameter sets (demo, classroom, full, tiny) and every notebook's cell defaults
standalone     a notebook opened alone makes or fetches what it needs; results archives (pack_run, fetch)
comparison     the rows of notebook 05's table: each embedding set named by its recipe, scored, paired
verdict        notebook 05's verdict, computed from that table
report         metrics.json and the run's index.html
runner         run the notebooks in order with papermill (`embedlab run`)
=============  ==============================================================================================
"""
