"""The SSS Lab browser app (Streamlit). ``streamlit run streamlit_app.py`` starts it.

Layout: ``views/`` one thin file per page; ``inputs`` the shared input widgets (model, editor and C,
request) and the run; ``panels`` the shared result panels; ``messages`` errors shown to the user;
``figures`` pure plotly figure functions; ``resources`` cached loaders; ``state`` typed session-state
and query-parameter accessors. The edit-and-measure logic is ``sss_core.analysis`` (no Streamlit).
"""
