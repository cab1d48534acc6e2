// A search box that suggests session ids as one types (ui.session_search). Each change of the
// text goes to Python as the state value "query"; Python answers with the ids that start with it
// (db.suggest_session_ids: a range of the primary key, at most 20) in `data`, and Streamlit calls
// this function again with them. At most one question is in flight: what is typed meanwhile is
// sent when the answer arrives, so a fast typist costs one rerun per round trip, and the first
// keystroke after a pause goes at once (no fixed delay). Picking an id (click, or arrows and
// Enter) sends it as the trigger value "picked"; Enter without a highlighted suggestion sends the
// text as typed. Every text is set with textContent: nothing from an id is ever parsed as HTML.

const ANSWER_TIMEOUT_MS = 3000; // an answer that never came (a rerun cut short): ask again

function build(parentElement, data) {
  const root = document.createElement("div");
  root.className = "gl-search";
  const listId = `gl-search-list-${Math.random().toString(36).slice(2)}`;

  const label = document.createElement("label");
  label.className = "gl-search-label";
  label.textContent = data.label;
  const input = document.createElement("input");
  input.type = "text";
  input.className = "gl-search-input";
  input.placeholder = data.placeholder;
  input.maxLength = data.maxLength;
  input.autocomplete = "off";
  input.spellcheck = false;
  input.setAttribute("role", "combobox");
  input.setAttribute("aria-autocomplete", "list");
  input.setAttribute("aria-expanded", "false");
  input.setAttribute("aria-controls", listId);
  input.value = data.query ?? "";
  label.append(input);

  const list = document.createElement("ul");
  list.className = "gl-search-list";
  list.id = listId;
  list.setAttribute("role", "listbox");
  list.setAttribute("aria-label", data.label);
  list.hidden = true;
  const status = document.createElement("div");
  status.className = "gl-search-status";
  status.setAttribute("aria-live", "polite");

  root.append(label, list, status);
  parentElement.append(root);

  const state = {
    input,
    list,
    status,
    data,
    sent: data.query ?? "", // the query Python last got
    inFlight: null, // the query asked and not answered yet
    pending: null, // typed while a question was in flight
    timer: null,
    active: -1, // the highlighted suggestion
    closed: false, // closed by a pick or Escape until the text changes
    shown: [], // the suggestions in the list
    api: null, // setStateValue / setTriggerValue of the latest call
  };
  root.state = state;

  input.addEventListener("input", () => {
    state.closed = false;
    ask(state, input.value);
  });
  input.addEventListener("focus", () => ask(state, input.value));
  input.addEventListener("blur", () => close(state));
  input.addEventListener("keydown", (event) => onKey(state, event));
  // mousedown, not click: a click would come after the blur that closes the list
  list.addEventListener("mousedown", (event) => {
    const option = event.target.closest("[data-index]");
    if (option) {
      event.preventDefault();
      pick(state, state.shown[Number(option.dataset.index)].id);
    }
  });
  return root;
}

function ask(state, text) {
  if (state.inFlight !== null) {
    state.pending = text; // sent when the answer to the one in flight arrives
  } else if (text !== state.sent) {
    send(state, text);
  }
  render(state);
}

function send(state, text) {
  state.sent = state.inFlight = text;
  state.pending = null;
  clearTimeout(state.timer);
  state.timer = setTimeout(() => answered(state), ANSWER_TIMEOUT_MS);
  state.api.setStateValue("query", text);
}

function answered(state) {
  clearTimeout(state.timer);
  state.inFlight = null;
  const next = state.pending;
  state.pending = null;
  if (next !== null && next !== state.sent) send(state, next);
}

// What to show for the text in the box: the answer to it, or while that is on its way, the
// suggestions of an earlier, shorter text that still start with it.
function suggestionsFor(state, text) {
  const { query, suggestions } = state.data;
  if (query === text) return { items: suggestions, final: true };
  if (text.startsWith(query) && query !== "") {
    return { items: suggestions.filter((s) => s.id.startsWith(text)), final: false };
  }
  return { items: [], final: false };
}

function render(state) {
  const { input, list, status, data } = state;
  const text = input.value;
  const { items, final } = suggestionsFor(state, text);
  const previous = state.shown[state.active]?.id;
  state.shown = items;
  state.active = items.findIndex((s) => s.id === previous);
  list.replaceChildren(
    ...items.map((suggestion, index) => {
      const option = document.createElement("li");
      option.className = "gl-search-option";
      option.id = `${list.id}-${index}`;
      option.dataset.index = String(index);
      option.setAttribute("role", "option");
      option.setAttribute("aria-selected", String(index === state.active));
      option.textContent = suggestion.label;
      option.title = suggestion.label;
      return option;
    }),
  );
  const open = document.activeElement === input && items.length > 0 && text.trim() !== "" && !state.closed;
  list.hidden = !open;
  input.setAttribute("aria-expanded", String(open));
  highlight(state);
  const waiting = state.inFlight !== null || state.pending !== null;
  if (!text.trim()) status.textContent = "";
  else if (final) status.textContent = data.note ?? "";
  else status.textContent = waiting ? "searching…" : "";
  status.dataset.final = String(final);
}

function highlight(state) {
  const options = state.list.children;
  for (let i = 0; i < options.length; i++) {
    options[i].setAttribute("aria-selected", String(i === state.active));
  }
  if (state.active >= 0) {
    state.input.setAttribute("aria-activedescendant", options[state.active].id);
    options[state.active].scrollIntoView({ block: "nearest" });
  } else {
    state.input.removeAttribute("aria-activedescendant");
  }
}

function onKey(state, event) {
  const count = state.shown.length;
  if (event.key === "ArrowDown" && count) {
    state.active = (state.active + 1) % count;
  } else if (event.key === "ArrowUp" && count) {
    state.active = state.active <= 0 ? count - 1 : state.active - 1;
  } else if (event.key === "Enter") {
    const chosen = state.active >= 0 ? state.shown[state.active].id : state.input.value;
    if (chosen.trim()) pick(state, chosen);
  } else if (event.key === "Escape") {
    state.closed = true;
    close(state);
  } else {
    return;
  }
  event.preventDefault();
  if (event.key.startsWith("Arrow")) {
    state.closed = false;
    state.list.hidden = count === 0;
    state.input.setAttribute("aria-expanded", String(count > 0));
  }
  highlight(state);
}

function close(state) {
  state.list.hidden = true;
  state.active = -1;
  state.input.setAttribute("aria-expanded", "false");
  highlight(state);
}

function pick(state, id) {
  state.input.value = id;
  state.closed = true;
  close(state);
  state.api.setTriggerValue("picked", id);
}

export default function ({ parentElement, data, setStateValue, setTriggerValue }) {
  const root = parentElement.querySelector(".gl-search") ?? build(parentElement, data);
  const state = root.state;
  state.api = { setStateValue, setTriggerValue };
  state.data = data;
  if (data.query === state.inFlight) answered(state);
  render(state);
  return () => clearTimeout(state.timer);
}
