"""The analyst's terminal (Textual): ``icdsl tui [FOLDER]``. The only package that imports Textual.

How data flows::

    keystroke ─▶ RuleEditor (TextArea; highlight.py colours it from the Lark lexer)
                   │ Changed (debounced 300 ms by the app)
                   ▼
    app._check  @work(thread=True): project.Project.analyse(open buffers)
                   │   load (buffers replace files) ─▶ check ─▶ compile ─▶ render_plan
                   ▼ AnalysisReady message
    app.analysis (reactive) ─▶ screens watch it: problems list, gutter marks, plan, explanation

Headless modules (no Textual, testable alone): ``highlight`` (spans from the lexer), ``project``
(files, checking with unsaved buffers, plan paragraphs), ``traffic`` (a traffic file's rows,
explaining one record), ``simulate`` (a billing cycle on a throw-away store),
``traffic_source`` (a traffic file or generated traffic), ``whatif`` (two versions of the rules
over the same traffic, each billed by the cycle engine), ``drill`` (the records behind a line), ``revenue``
(revenue and cost of a simulation or a store's cycles), ``ledger`` (a real store's finalized and
draft cycles, ``icdsl tui --db``), ``feeds`` (reconciliations, disputes and assurance findings as
functions handed to the app), ``reconview`` (a reconciliation walked down to its records). Analysts' guide: ``docs/tui.md``. Textual modules: ``app`` (state, workers, navigation), ``bindings`` (the
one table of keys, with ids for remapping), ``screens`` (the list of screens; later screens
register there), ``messages``, and ``components/`` (one widget or screen per module).
"""
