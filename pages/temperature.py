"""Temperature explorer: what a trained teacher's probabilities look like as T grows."""

import numpy as np
import streamlit as st

from kd import plots, service
from pages.common import check_store, current_run, plain, run_label

st.title("Temperature explorer")
check_store()  # a store that cannot be used is said at once
st.markdown(
    "At T = 1 a trained teacher is nearly certain; dividing its logits by a larger T "
    'reveals how it ranks the *wrong* classes, the "dark knowledge" a student learns from.'
)
with_teacher = [r for r in service.runs() if service.weights_file(r.id, "teacher")]
if not with_teacher:
    st.info("No trained teacher yet: start a run on the Train page.")
    st.stop()
run = current_run()
if run is None or run not in with_teacher:
    run = st.selectbox("Teacher from run", with_teacher, format_func=run_label)


@st.cache_resource(show_spinner="Loading the teacher…", max_entries=4)
def teacher_logits(run_id: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Test logits of the run's teacher, the raw test inputs (for display), labels, class names."""
    return service.teacher_outputs(run_id, 512)


logits, raw, labels, class_names = teacher_logits(run.id)
st.markdown("**Pick a test example**")
start = st.number_input("First example shown", 0, len(labels) - 8, 0, step=8, help="Among the first 512 test examples.")
shown = list(range(int(start), int(start) + 8))
if raw.ndim == 4:  # (N, C, H, W) images in [0, 1]
    thumbs = [raw[i].transpose(1, 2, 0) if raw.shape[1] == 3 else raw[i, 0] for i in shown]
    st.image(thumbs, caption=[f"#{i}: {class_names[labels[i]]}" for i in shown], width=72, clamp=True)
index = st.radio("Example", shown, horizontal=True, format_func=lambda i: f"#{i}")
left, right = st.columns([1, 2])
with left:
    if raw.ndim == 4:
        image = raw[index].transpose(1, 2, 0)
        st.image(image if image.shape[2] == 3 else image[:, :, 0], width=160, clamp=True)
    else:
        st.write(f"point ({raw[index][0]:.2f}, {raw[index][1]:.2f})")
    st.caption(
        f"true class: **{plain(class_names[labels[index]])}** · teacher says: "
        f"**{plain(class_names[int(logits[index].argmax())])}**"
    )
    temperature = st.slider("Temperature T", 0.5, 20.0, 4.0, 0.5)
with right:
    probs = {1.0: service.softened(logits[index], 1.0), temperature: service.softened(logits[index], temperature)}
    st.plotly_chart(plots.temperature_figure(probs, class_names), key="probs")
    temps = np.linspace(0.5, 20, 80)
    st.plotly_chart(
        plots.entropy_figure(
            temps, service.entropy_curve(logits[index], temps), temperature, num_classes=len(class_names)
        ),
        key="entropy",
    )
