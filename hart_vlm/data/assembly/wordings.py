"""The many ways users word a request for a guide or a question about a picture, beyond the
data's own templates (phrasing.PROMPTS, VIEW_REQUESTS): the "varied" family that training draws
from, and an "unseen" family that no training example uses, kept for the benchmarks.
"""

# More ways users ask for a guide. `varied` wording draws from PROMPTS and these; none of them is
# in UNSEEN_PROMPTS.
MORE_PROMPTS = (
    "Hey, can you help me build {a_desc}?",
    "So I've got {a_desc} in pieces on my floor. Where do I start?",
    "Could you please explain how to assemble {a_desc}?",
    "Would you mind showing me how to put {a_desc} together?",
    "Assembly instructions for {a_desc}, please.",
    "Steps to build {a_desc}?",
    "How to assemble {a_desc}?",
    "My partner and I just bought {a_desc} and the manual is missing. How do we assemble it?",
    "I'm moving into a new flat and need to set up {a_desc}. Walk me through it.",
    "Explain how to build {a_desc}, one step at a time.",
    "Teach me to assemble {a_desc}.",
    "List the assembly steps for {a_desc}, with a picture for each.",
    "I need step-by-step instructions with pictures for building {a_desc}.",
    "Can you show me how {a_desc} is assembled?",
    "What order do the parts of {a_desc} go in?",
    "Please give me a visual guide to putting together {a_desc}.",
    "I have never built furniture before. How do I assemble {a_desc}?",
    "Help me put together {a_desc}.",
    "How should I go about assembling {a_desc}?",
    "Draw me the assembly of {a_desc}, step by step.",
    "I ordered {a_desc} online. Can you take me through the assembly?",
    "Where do I begin with {a_desc}? Show me every step.",
    "I'd love an illustrated walkthrough for building {a_desc}.",
    "Could you make me a picture guide for assembling {a_desc}?",
    "What's the easiest way to assemble {a_desc}?",
    "Quick question: how do I build {a_desc}?",
    "Show me how to assemble {a_desc}, please.",
    "I want to assemble {a_desc} myself. What are the steps?",
    "Instructions for putting together {a_desc}?",
    "Tell me how to build {a_desc}, and draw each step.",
    "Can you help? I'm trying to assemble {a_desc}.",
    "Building {a_desc} today. What should I do, step by step?",
)
# A family of guide requests that no training example uses, to measure how far a model
# generalises beyond its data's wording (the assembly benchmark's --wording unseen).
UNSEEN_PROMPTS = (
    "What's the right order to fit together the parts of {a_desc}?",
    "I'm stuck assembling {a_desc}. Could you lay out each stage for me?",
    "Guide me through setting up {a_desc} from the flat-pack box.",
    "Need a hand: {a_desc}, from box to finished piece.",
    "Which steps does it take to construct {a_desc}?",
    "Help! How does {a_desc} go together?",
    "Please break down the build of {a_desc} into steps.",
    "Describe, stage by stage, how to erect {a_desc}.",
    "My new {desc} arrived flat-packed. How do I get it standing?",
    "Could you sketch out the assembly process for {a_desc}?",
)
UNSEEN_VIEW_REQUESTS = (
    "The pictures should be from the {view}.",
    "I'll be looking at it from the {view}.",
)
# Questions about one picture, by what they ask; the answers (`answer_question`) use the data's
# own words, so the checker's parser reads them back. UNSEEN_QUESTIONS are never trained on. "step"
# questions come with the guide's steps listed under them and are answered "It shows the result of
# step k."; "match" questions quote one step and are answered yes or no.
QUESTIONS: dict[str, tuple[str, ...]] = {
    "kind": ("What kind of furniture is this?", "What piece of furniture is shown here?",
             "What is being built in this picture?", "Which furniture is this?", "What is this?",
             "What am I looking at?", "What is this piece?", "What furniture do you see in the image?",
             "Which piece of furniture is in the picture?", "What is the thing in this image?",
             "Tell me what this furniture is.", "What sort of item is being assembled here?"),
    "material": ("What is it made of?", "What material is this furniture?", "What colour is this piece of furniture?",
                 "Which finish does it have?", "What colour is it?", "What is the finish of this piece?",
                 "What color is the furniture in the picture?", "What wood or colour is this?",
                 "Which colour was it made in?", "What is the material of the piece shown?", "Say what colour it has.",
                 "What finish do you see here?"),
    "parts": ("Which parts are already in place?", "What has been assembled so far?", "Which parts can you see?",
              "What is fitted already?", "List the parts that are assembled.", "Which pieces are attached already?",
              "What parts have been put on?", "Which parts does the picture show in place?", "What is already mounted?",
              "Name the parts that are fitted.", "Which parts are done so far?", "What do you see assembled in the image?"),
    "progress": ("Is it finished?", "Is this piece fully assembled?", "Is the assembly complete?", "Is the build done?",
                 "Is it completely built?", "Is this furniture ready to use?", "Has everything been fitted?",
                 "Is the piece complete?", "Are all the parts in place?", "Is the job finished?",
                 "Is it fully put together?", "Am I done building this?"),
    # asked with the guide's steps listed below the question
    "step": ("Which step of the guide does this picture show?", "Which of these steps is shown in the picture?",
             "What step is this picture of?", "Which step has just been done in this picture?",
             "Which step does this image match?", "After which step was this picture taken?",
             "Which of the steps below is done in this picture?", "Find the step this picture shows."),
    # {step}: one "Step k: ..." line of the guide
    "match": ('Does this picture match "{step}"?', 'Is this the picture for "{step}"?',
              'Does the picture show the result of "{step}"?', 'Is this picture consistent with "{step}"?',
              'Is this what it looks like after "{step}"?', 'Does this image show "{step}" done?',
              'Does the image go with "{step}"?', 'Is "{step}" what this picture shows?'),
}
# Around a question: a greeting or lead-in before it, a courtesy after it (chosen at random, often none).
QUESTION_LEADS = ("", "", "", "", "Quick question: ", "Hi! ", "Looking at this picture: ", "Please tell me: ",
                  "One more thing. ", "Hey! ")
QUESTION_TAILS = ("", "", "", "", "", " Thanks!", " Answer briefly, please.", " Thank you.")
UNSEEN_QUESTIONS: dict[str, tuple[str, ...]] = {
    "kind": ("Can you identify the item in this photo?", "Name the type of furniture pictured."),
    "material": ("Tell me the wood or colour of this piece.", "Which material was used for the item in the image?"),
    "parts": ("Which components have been attached at this point?", "Tell me what's been put together here."),
    "progress": ("Has the assembly been completed?", "Does this look done to you?"),
    "step": ("At which stage of these instructions was this photo taken?",
             "Looking at the instructions below, how far along is the build in this image?"),
    "match": ('Would you say the image fits the instruction "{step}"?', 'Check this image against "{step}": do they agree?'),
}
