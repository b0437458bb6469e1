"""The SSS Lab browser app (Streamlit). ``streamlit run streamlit_app.py`` starts it.

Layout: ``views/`` one thin file per page; ``panels`` shared widgets and result panels;
``figures`` pure plotly figure functions; ``analysis`` the edit-and-measure logic (no Streamlit);
``resources`` cached loaders; ``state`` typed session-state and query-parameter accessors.
"""
