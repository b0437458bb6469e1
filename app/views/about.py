"""About: lambda_max, C and the metrics in plain words, with the paper's formulas (teaching material)."""

import streamlit as st

st.title("About SSS Lab")
st.markdown("""
SSS Lab shows what a **knowledge edit** does to a language model. An edit takes a prompt
*x_e* ("The capital of France is") and a new answer *y_e* ("Rome") and changes the model's weights so
it gives the new answer, ideally without disturbing anything else it knows. The project implements
*SSS: Editing Factual Knowledge in Language Models towards Semantic Sparse Space*: the paper's idea is
that an edit disturbs its neighbours less when the edited sentence's embedding sits where meanings are
**sparse**, and that one can push it there during the edit.
""")

st.header("The metrics of an edit")
st.markdown("Each is a fraction between 0 and 1, higher is better. The app and the paper score them the way "
            "EasyEdit does: feed *prompt + answer* and check, token by token, whether the model's most likely "
            "next token is the answer's token (\"teacher forcing\").")
st.subheader("Reliability")
st.markdown("Does the edited model f_θe give the new answer for the edit prompt itself? (paper Eq. 1)")
st.latex(r"\mathbb{E}_{(x'_e,y'_e)\sim\{(x_e,y_e)\}}\;\mathbb{1}\{\arg\max_y f_{\theta_e}(y\mid x'_e)=y'_e\}")
st.subheader("Generality")
st.markdown("... and for **paraphrases** of the prompt that it was not trained on, the in-scope examples "
            "I(x_e, y_e) (\"The capital city of France is\")? (Eq. 2)")
st.latex(r"\mathbb{E}_{(x'_e,y'_e)\sim I(x_e,y_e)}\;\mathbb{1}\{\arg\max_y f_{\theta_e}(y\mid x'_e)=y'_e\}")
st.subheader("Locality")
st.markdown("Do **unrelated** prompts O(x_e, y_e) (\"The capital of Spain is\") keep exactly the predictions "
            "the unedited model f_θ gave them? (Eq. 3)")
st.latex(r"\mathbb{E}_{(x'_e,y'_e)\sim O(x_e,y_e)}\;\mathbb{1}\{\arg\max_y f_{\theta_e}(y\mid x'_e)="
         r"\arg\max_y f_{\theta}(y\mid x'_e)\}")
st.markdown("""
**Portability** asks whether the edit carries over to what it implies: the subject under another name
(*subject replace*: "USA" for "United States"), the *reversed relation* ("Rome is the capital of" -> France)
and *one-hop* questions ("The currency of the country whose capital is ...").

Locality has levels in the paper's comprehensive study, all shown as groups in the Edit page's table:
**pre-neighbours** (other subjects whose answer is the *old* answer: did they follow the edit by mistake?),
**post-neighbours** (subjects whose answer already is the *new* one), **distract-neighbours** (the edit
sentence is prepended to a neighbour's prompt; the neighbour's answer must stay) and **unrelated attributes**
(other facts about the same subject: France's currency must not change when its capital does).
""")

st.header("λ_max, the SSS metric")
st.markdown("Let J be the per-token negative log-likelihood of the new answer given the prompt (paper Eq. 8):")
st.latex(r"\mathcal{J}(x_e,y_e) = -\,\mathbb{E}_{y_e\mid x_e}\left[\log P_{\mathrm{LM}}(y_e\mid x_e)\right]")
st.markdown("λ_max is the average, over the m tokens, of the squared length of J's gradient with respect to "
            "each token's last hidden state h_i (paper Eq. 9):")
st.latex(r"\lambda_{\max} = \frac{1}{m}\sum_{i=1}^{m}\left\lVert \nabla_{h_i}\mathcal{J}(x_e,y_e)\right\rVert^2")
st.markdown("""
In plain words: **how much would the loss change if the sentence's embedding were nudged a little?**
A large λ_max means a tiny nudge changes what the model says: the embedding sits in a *dense* region,
crowded with other meanings, and moving it to write the new fact is likely to drag its neighbours along.
A small λ_max means the embedding is robust, the region around it is *sparse*, and an edit there
is less likely to spill over. It is the largest eigenvalue of the matrix H = ∇J^T ∇J (Eq. 7), hence the name.

Here, h_i is the last hidden state (`hidden_states[-1]` in transformers: the final block's output after the
final norm) and m counts every token fed (prompt and answer). The authors' released code sums instead of
averaging (no 1/m); the core offers both (`reduction="sum"`) and defaults to the paper.
""")

st.header("C, the weight of SSS")
st.markdown("Training-based editors (FT-L, MEND, SERAC) minimise their usual loss L_ori. With SSS they "
            "minimise a mix (paper Eq. 10):")
st.latex(r"L_{\mathrm{all}} = (1 - C)\cdot L_{\mathrm{ori}} + C\cdot \mathrm{SSS}")
st.markdown("""
- **C = 0** is the editor without SSS.
- **C = 0.9** is the paper's default: mostly "keep the embedding in a sparse place", a little "say the new
  answer"; the paper reports the best locality for C ≥ 0.6.
- **C = 1** keeps only the SSS term, and it still edits: λ_max is taken against the *new* target, and
  it becomes small when the model is confident of that target, so minimising it writes the fact
  (measured on the shipped model: France -> Rome at C = 1 gives reliability 1.00, top-1 " Rom" at 0.98).

The **C sweep** page runs one edit at many values of C so you can see this trade-off yourself. Computing the
SSS term needs a gradient of a gradient (a "double backward"), which is why an SSS edit is slower.
""")

st.header("What SSS did on the shipped model (measured)")
st.markdown("""
From the reports in `docs/results/` (world test edits, paired: the same edits with and without SSS, C = 0.9):
- **FT-L**: with its defaults FT-L and FT-L+SSS make the same edit. Over 600 edits SSS changed reliability by
  0.00, generality by −0.15 and locality by +0.09 points (every CI includes 0); 91% of the edits kept every
  prediction identical, and the C sweep is flat from C = 0 to 0.9. The editor **ft-l+sss-loose-sum** (a looser
  weight box, the SSS term summed over tokens as in the authors' code) is where the term changes FT-L's
  predictions most (half of 200 edits), still with no net gain in any metric (`docs/editors.md`).
- **MEND+SSS** edits more reliably (+6.1 points) and generalises better (+7.4) but protects neighbours less
  (−2.7); **SERAC+SSS** edits less reliably (−13.3).
- λ_max after an edit, against the new target, is tiny for every editor that made the edit, with or without
  SSS: it mostly measures the model's confidence in the target.
""")

st.header("Reading the pages")
st.markdown("""
- **Edit**: run one edit. The table lists every probe: the probability of the old and the new answer before
  and after, and whether the top-1 prediction flipped (✓ where it flipped to the new target, "off target"
  where the edit wanted the new target but got another token, ✗ where a flip is damage). The bar chart shows
  which weights changed and by how much.
- **Projection**: every probe sentence and some unrelated world facts, embedded before (hollow) and after
  (filled) the edit, with arrows. Colour the points by group, by λ_max (against each sentence's own top
  answer), by kNN distance (how far its k nearest neighbours are, in the full space: large = sparse), by
  damage (how much its old answer's probability changed) or by the distance it moved; the colour bar names
  the unit. PCA is the default: it is linear and fitted once on both sets, so sentences the edit did not move
  stay put and an arrow is never longer than the real move. UMAP and t-SNE show neighbourhoods better but bend
  distances; under the plot the page compares each arrow with the move in the full space and names the
  sentences where they disagree. Click or lasso points to ring and list their k nearest neighbours before vs
  after; the selection stays when you change the method.
- **Compare**: two edits of the same fact, A and B: their metrics, then what differs, paired probe by probe
  (the change of P(old answer) under A minus under B), the size of each weight change and the cosine between
  them, both optimisation trajectories, and both on one joint projection. When A and B made the same edit,
  the page says so.
- **Hypothesis**: the paper's claim tested over many edits (run here, or a bench's results): λ_max before and
  the kNN distance of each edit against the damage it did (1 − locality), Spearman ρ with a confidence
  interval and a p-value from one bootstrap, the partial ρ once the target's surprise (its NLL) is taken out,
  the sign the paper predicts beside each verdict, and the paired effect of SSS. A table tests several
  correlations at once, so its p-values are corrected together (Benjamini-Hochberg) and a verdict needs the
  corrected p below 0.05: with 25 tests, about one raw p-value under 0.05 is expected by chance. A row that
  repeats another editor's numbers (identical edits, or a measure of the unedited model) is one test with it.
  Click a point to open that edit.
- **C sweep**, **Sequential**: one edit across C; edits that accumulate (the paper's Table 2), where locality
  decays as n grows.
- **Results**: browse a report written by `python -m sss_core bench --out DIR`.

A class exercise: pick a preset, run FT-L and then FT-L+SSS on the **Compare** page, and read the paired
differences: which neighbours did each one damage, and did they make the same edit at all? Then ask on the
**Hypothesis** page whether λ_max or the kNN distance predicts the damage over many edits, and whether it still
does once the target's NLL is partialled out.
""")
st.caption("Paper: SSS: Editing Factual Knowledge in Language Models towards Semantic Sparse Space. The default "
           "model is a small GPT-2 trained by this project on its own generated world of facts; it knows only "
           "that world.")
