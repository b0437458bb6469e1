"""One file per page; streamlit_app.py lists them in st.navigation."""
