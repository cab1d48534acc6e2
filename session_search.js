// A search box that suggests session ids as one types (ui.session_search). Each change of the
// text is asked of the server's route `data.suggestUrl` (GET ?q=TEXT, gender/suggest.py) with the
// token the page minted after its access gate (`data.token`, sent as the X-Gender-Search header):
// the answer, the ids that start with the text (db.suggest_session_ids: a range of the primary key,
// at most 20) with their labels and a note, comes back without any Streamlit rerun.
//
// When the route cannot be used (the request fails or times out, the token is refused, the text
// cannot be put in a URL) the text goes to Python as the state value "query" instead, and Python
// answers in `data` (a rerun of the box's fragment) with the same answer; a refused token is
// replaced by the one that rerun brings. At most one question is in flight either way: what is
// typed meanwhile is asked when the answer arrives, so the answer shown is always for the text in
// the box, and the first keystroke after a pause goes at once (no fixed delay). Picking an id
// (click, or arrows and Enter) sends it as the trigger value "picked"; Enter without a highlighted
// suggestion sends the text as typed. Every text is set with textContent: nothing from an id is
// ever parsed as HTML.

const ANSWER_TIMEOUT_MS = 3000; // an answer that never came (a rerun cut short, a request hung): move on
const ROUTE_PAUSE_MS = 30000; // after the route failed (not a refused token), Python answers meanwhile
const TOKEN_HEADER = "X-Gender-Search";

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
    answer: answerOf(data), // the latest answer, from the route or from Python: {query, suggestions, note}
    sent: data.query ?? "", // the text last asked
    inFlight: null, // the text asked and not answered yet
    via: null, // how it was asked: "route" or "python"
    asked: 0, // numbers the questions, so that a late answer to an abandoned one is dropped
    pending: null, // typed while a question was in flight
    timer: null,
    refusedToken: null, // a token the route refused: Python is asked until a new one comes
    routePausedUntil: 0,
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

function answerOf(data) {
  return { query: data.query ?? "", suggestions: data.suggestions ?? [], note: data.note ?? null };
}

function ask(state, text) {
  if (state.inFlight !== null) {
    state.pending = text; // asked when the answer to the one in flight arrives
  } else if (text !== state.sent) {
    send(state, text);
  }
  render(state);
}

function send(state, text) {
  state.sent = state.inFlight = text;
  state.pending = null;
  const number = ++state.asked;
  if (routeUsable(state)) {
    askRoute(state, text, number);
  } else {
    askPython(state, text, number);
  }
}

function routeUsable(state) {
  const { suggestUrl, token } = state.data;
  return Boolean(suggestUrl && token) && token !== state.refusedToken && Date.now() >= state.routePausedUntil;
}

function askPython(state, text, number) {
  state.via = "python";
  clearTimeout(state.timer);
  state.timer = setTimeout(() => {
    if (state.asked === number) answered(state); // never answered (a rerun cut short): the next text may go
  }, ANSWER_TIMEOUT_MS);
  state.api.setStateValue("query", text); // Python answers in `data`, see the default export
}

async function askRoute(state, text, number) {
  state.via = "route";
  const { suggestUrl, token } = state.data;
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), ANSWER_TIMEOUT_MS);
  let answer = null;
  try {
    const response = await fetch(`${suggestUrl}?q=${encodeURIComponent(text)}`, {
      headers: { [TOKEN_HEADER]: token },
      cache: "no-store",
      credentials: "same-origin",
      signal: controller.signal,
    });
    if (response.status === 401) {
      state.refusedToken = token; // Python is asked until a rerun brings a new token
    } else if (response.ok) {
      const body = await response.json();
      const texts = (s) => typeof s?.id === "string" && typeof s.label === "string";
      if (Array.isArray(body.suggestions) && body.suggestions.every(texts)) {
        answer = { query: text, suggestions: body.suggestions, note: body.note ?? null };
      }
    }
  } catch (error) {
    // A text that cannot be put in a URL (a lone surrogate) is no fault of the route.
    if (error instanceof URIError) state.via = "unsendable";
  } finally {
    clearTimeout(timer);
  }
  if (state.asked !== number || state.inFlight !== text) return; // given up on meanwhile
  if (answer !== null) {
    state.answer = answer;
    answered(state);
    render(state);
    return;
  }
  if (state.refusedToken !== token && state.via === "route") {
    state.routePausedUntil = Date.now() + ROUTE_PAUSE_MS; // a network error, a timeout, a 5xx
  }
  askPython(state, text, number); // the same question, answered by a rerun of the box
}

function answered(state) {
  clearTimeout(state.timer);
  state.inFlight = null;
  state.via = null;
  const next = state.pending;
  state.pending = null;
  if (next !== null && next !== state.sent) send(state, next);
}

// What to show for the text in the box: the answer to it, or while that is on its way, the
// suggestions of an earlier, shorter text that still start with it.
function suggestionsFor(state, text) {
  const { query, suggestions } = state.answer;
  if (query === text) return { items: suggestions, final: true };
  if (text.startsWith(query) && query !== "") {
    return { items: suggestions.filter((s) => s.id.startsWith(text)), final: false };
  }
  return { items: [], final: false };
}

function render(state) {
  const { input, list, status } = state;
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
  else if (final) status.textContent = state.answer.note ?? "";
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
  state.data = data; // a rerun brings a fresh token
  // Python's answer counts when Python was asked; otherwise `data` holds the answer to the text
  // Python was last asked, older than the route's.
  if (state.via === "python" && data.query === state.inFlight) {
    state.answer = answerOf(data);
    answered(state);
  }
  render(state);
  return () => clearTimeout(state.timer);
}
